"""Functional building blocks of continuous convolutions: grids, cropping, spatial and FFT conv.

Everything here is stateless. Shapes: ``x`` is ``(B, C_in, *spatial)``, ``weight`` is
``(C_out, C_in // groups, *k)`` and ``D = len(spatial)`` is 1, 2 or 3. Convolutions are
cross-correlations, as in ``torch.nn.functional.conv*d``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from flexcore.layers.fft_cost import fft_is_faster, next_fast_len

__all__ = [
    "rel_positions",
    "grid_coordinates",
    "symmetric_crop",
    "causal_crop",
    "crop_slices",
    "resolve_padding",
    "conv_spatial",
    "needs_explicit_padding",
    "overlapping_taps",
    "conv_fft",
    "kernel_spectrum",
    "fft_sizes",
    "plan_fft_sizes",
    "conv",
    "fft_is_faster",
    "next_fast_len",
]

Padding = Union[str, int, Sequence[int], Sequence[Tuple[int, int]]]
_CONV_FNS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


# -- relative positions ---------------------------------------------------------------
def grid_coordinates(n: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` positions in ``[-1, 1]``: ``torch.linspace(-1, 1, n)``, bit-exact with the original."""
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


def rel_positions(sizes: Sequence[int], device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Relative-position grid ``(1, D, *sizes)``; channel ``d`` varies along spatial dim ``d``.

    Per dim ``linspace(-1, 1, n)`` combined by ``meshgrid(indexing="ij")``, exactly the
    original's grid (§2.1 of the reference), so kernel nets see the same float32 values.
    """
    coords = [grid_coordinates(int(n), device=device, dtype=dtype) for n in sizes]
    return torch.stack(torch.meshgrid(*coords, indexing="ij"), dim=0).unsqueeze(0)


# -- dynamic cropping ---------------------------------------------------------------
def symmetric_crop(coords: Tensor, radius: float) -> slice:
    """Indices of a 1-D grid to keep so that ``[-radius, radius]`` is covered, symmetric about the centre.

    The original's rule (§2.3): if ``radius >= 1`` keep everything; else ``k`` is the first
    index among ``0 .. n//2`` with ``position > -radius`` and indices ``k .. n-1-k`` are kept,
    so an odd grid stays odd. At least one point (two for even grids) is always kept.
    """
    n = coords.shape[0]
    if not radius < 1.0:
        return slice(0, n)
    half = coords[: n // 2 + 1]
    above = (half > -radius).nonzero()
    k = int(above[0]) if above.numel() else n // 2
    k = min(k, (n - 1) // 2)
    return slice(k, n - k)


def causal_crop(coords: Tensor, lower: float) -> slice:
    """Keep the positions ``> lower`` of a causal 1-D grid (only the far past is dropped).

    The original's rule (§2.3): nothing is cropped unless ``|lower| < 1``; position ``+1``
    ("now") is always kept.
    """
    n = coords.shape[0]
    if not abs(lower) < 1.0:
        return slice(0, n)
    k = int((coords <= lower).sum())
    return slice(min(k, n - 1), n)


def crop_slices(coords: Sequence[Tensor], bounds: Tensor, causal: bool = False) -> Tuple[slice, ...]:
    """Per-dim slices of the grid to evaluate, from a mask's support ``bounds``.

    Args:
        coords: per-dim 1-D coordinate vectors of the full grid (CPU tensors).
        bounds: ``(D, 2)`` float tensor of ``(lower, upper)`` positions where the mask
            falls below its threshold (on the CPU, no grad).
        causal: 1-D causal layer: crop only the past side (below ``lower``).
    """
    if causal:
        if len(coords) != 1:
            raise ValueError(f"causal cropping is 1-D only, got a {len(coords)}-D grid")
        return (causal_crop(coords[0], float(bounds[0, 0])),)
    radius = bounds.abs().amax(dim=1)  # R = max(|lower|, |upper|) per dim
    return tuple(symmetric_crop(c, float(r)) for c, r in zip(coords, radius))


# -- padding --------------------------------------------------------------------------
def resolve_padding(padding: Padding, kernel_size: Sequence[int], causal: bool = False) -> List[Tuple[int, int]]:
    """``(left, right)`` zero padding per spatial dim.

    Args:
        padding: ``'same'`` (output size = input size at stride 1; for an even kernel the
            extra zero goes right, as ``nn.Conv*d(padding='same')``), ``'valid'`` (none),
            an int, a per-dim tuple of ints, or a per-dim tuple of ``(left, right)`` pairs.
        kernel_size: the kernel's spatial size.
        causal: 1-D causal: ``'same'`` means ``K - 1`` zeros on the left only, so tap ``K-1``
            meets ``x[t]`` (the original's causal padding; its leading zero tap for even
            kernels changes nothing and is not materialised).
    """
    dims = len(kernel_size)
    if isinstance(padding, str):
        if padding == "same":
            if causal:
                return [(k - 1, 0) for k in kernel_size]
            return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size]
        if padding == "valid":
            return [(0, 0)] * dims
        raise ValueError(f"padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    if causal:
        raise ValueError(f"a causal convolution pads itself ('same' or 'valid'), got padding={padding!r}")
    if isinstance(padding, int):
        pairs = [(padding, padding)] * dims
    else:
        padding = list(padding)
        if len(padding) != dims:
            raise ValueError(f"padding {padding} has {len(padding)} entries for a {dims}-D kernel")
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    if any(len(p) != 2 or min(p) < 0 for p in pairs):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return [tuple(int(v) for v in p) for p in pairs]


def _flat_pad(pairs: Sequence[Tuple[int, int]]) -> List[int]:
    """``F.pad`` order: last dim first."""
    return [v for left, right in reversed(pairs) for v in (left, right)]


def _out_len(n: int, k: int, pad: Tuple[int, int], stride: int) -> int:
    return (n + pad[0] + pad[1] - k) // stride + 1


# -- spatial convolution -----------------------------------------------------------------
def needs_explicit_padding(spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]]) -> bool:
    """True where a direct convolution must not get its padding implicitly.

    oneDNN's CPU weight-gradient kernel (torch 2.14, oneDNN 3.12) corrupts the heap when the
    implicit padding along the first spatial dim reaches the input size minus one (e.g. a
    33x7 kernel on 16x16, 24 channels); docs/layers.md has the measurements. This guard is
    wider (any dim, any padding side at least half the input, or a kernel larger than the
    input) and decided from shapes only, since the fault depends on the CPU.
    """
    return any(k > n or 2 * max(p) >= n for n, k, p in zip(spatial, kernel_size, pads))


def overlapping_taps(
    spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]], stride: Sequence[int]
) -> Tuple[Tuple[slice, ...], List[Tuple[int, int]]]:
    """Per-dim slice of kernel taps that meet the input at some output, and the padding
    that yields the same outputs with the cropped kernel.

    Tap ``i`` of output ``o`` reads input ``o * s + i - left``; taps outside
    ``[left - (out-1) s, left + n)`` read only padding zeros, so dropping them changes
    neither the output nor any gradient (theirs is zero either way).
    """
    slices, new_pads = [], []
    for n, k, (left, right), s in zip(spatial, kernel_size, pads, stride):
        out = _out_len(n, k, (left, right), s)
        lo = min(max(0, left - (out - 1) * s), k - 1)
        hi = max(min(k, left + n), lo + 1)  # one tap (reading zeros) where none meets the input
        new_left = left - lo
        new_right = max(0, (out - 1) * s + (hi - lo) - n - new_left)
        slices.append(slice(lo, hi))
        new_pads.append((new_left, new_right))
    return tuple(slices), new_pads


def conv_spatial(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: Sequence[int] = (1,),
    pads: Sequence[Tuple[int, int]] = ((0, 0),),
    groups: int = 1,
) -> Tensor:
    """Direct (``F.conv*d``) cross-correlation with per-dim ``(left, right)`` zero padding.

    Shapes that :func:`needs_explicit_padding` flags run with the never-overlapping taps
    cropped (:func:`overlapping_taps`) and the padding applied by ``F.pad``.
    """
    dims = weight.dim() - 2
    spatial, ksize = x.shape[2:], weight.shape[2:]
    out = [_out_len(n, k, p, 1) for n, k, p in zip(spatial, ksize, pads)]
    if min(out) < 1:
        raise ValueError(f"kernel {tuple(ksize)} larger than padded input {tuple(spatial)} with padding {list(pads)}")
    if needs_explicit_padding(spatial, ksize, pads):
        # Crop taps that only ever meet padding (exact, and less work), then pad explicitly.
        taps, pads = overlapping_taps(spatial, ksize, pads, stride)
        weight = weight[(slice(None), slice(None), *taps)]
        return _CONV_FNS[dims](F.pad(x, _flat_pad(pads)), weight, bias, stride=tuple(stride), groups=groups)
    if all(left == right for left, right in pads):
        padding = tuple(left for left, _ in pads)
    else:
        x = F.pad(x, _flat_pad(pads))
        padding = 0
    return _CONV_FNS[dims](x, weight, bias, stride=tuple(stride), padding=padding, groups=groups)


# -- FFT convolution ---------------------------------------------------------------------
def fft_sizes(spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]]) -> List[int]:
    """Smallest fast transform length per dim that avoids circular wrap-around.

    Circular convolution of length ``N`` equals the padded linear one on the kept outputs
    when ``N >= n + max(left, right)`` (and ``N >= k``): the zeros the padding would add
    are supplied by the transform's own zero extension, so 'same' needs only ``n + (k-1)/2``,
    not ``n + k - 1``.
    """
    # int(): under jit tracing, sizes are 0-d tensors (slow arithmetic, defeats the cache).
    return [next_fast_len(int(max(n + max(p), k))) for n, k, p in zip(spatial, kernel_size, pads)]


def _shift_excess(x: Tensor, ksize: Sequence[int], pads: Sequence[Tuple[int, int]]):
    """A left padding beyond ``k - 1`` reads only zeros; materialise that excess (rare)."""
    excess = [max(0, left - (k - 1)) for (left, _), k in zip(pads, ksize)]
    if any(excess):
        x = F.pad(x, _flat_pad([(e, 0) for e in excess]))
        pads = [(left - e, right) for (left, right), e in zip(pads, excess)]
    return x, pads


def kernel_spectrum(weight: Tensor, sizes: Sequence[int]) -> Tensor:
    """Spectrum of the flipped kernel, frequency-major: ``(n_freq, C_out, C_in // groups)`` complex.

    The layout :func:`conv_fft` mixes channels in; compute it once and reuse it across the
    batch and, for a fixed kernel, across calls (the eval-mode cache does).
    """
    dims = weight.dim() - 2
    fdims = tuple(range(-dims, 0))
    w_hat = torch.fft.rfftn(weight.flip(fdims), s=list(sizes), dim=fdims)
    return w_hat.reshape(weight.shape[0], weight.shape[1], -1).permute(2, 0, 1).contiguous()


def plan_fft_sizes(spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]]) -> List[int]:
    """The transform lengths :func:`conv_fft` will use for this geometry (key of cached spectra)."""
    excess = [max(0, left - (k - 1)) for (left, _), k in zip(pads, kernel_size)]
    spatial = [n + e for n, e in zip(spatial, excess)]
    pads = [(left - e, right) for (left, right), e in zip(pads, excess)]
    return fft_sizes(spatial, kernel_size, pads)


def conv_fft(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor] = None,
    stride: Sequence[int] = (1,),
    pads: Sequence[Tuple[int, int]] = ((0, 0),),
    groups: int = 1,
    weight_hat: Optional[Tensor] = None,
    kernel_size: Optional[Sequence[int]] = None,
) -> Tensor:
    """The same cross-correlation as :func:`conv_spatial`, computed with real FFTs.

    The transform length per dim is the smallest fast length ``>= n + max(left, right)``
    (:func:`fft_sizes`); the kernel is flipped and zero-extended by the transform itself and
    the padded output starts at index ``k - 1 - left`` of the circular result, so neither a
    padded copy of the input nor a wrap-around copy of the output is made. Channels are
    mixed by one batched complex matmul over frequencies, reusing the kernel spectrum across
    the batch. Half-precision inputs are transformed in float32.

    Args:
        weight: the kernel, or None when ``weight_hat`` (its :func:`kernel_spectrum` at
            :func:`fft_sizes`) and ``kernel_size`` are given.
    """
    ksize = tuple(weight.shape[2:]) if weight is not None else tuple(kernel_size)
    dims = len(ksize)
    out_dtype = x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    x, pads = _shift_excess(x, ksize, pads)
    spatial = x.shape[2:]
    out_full = [n + left + right - k + 1 for n, k, (left, right) in zip(spatial, ksize, pads)]
    if min(out_full) < 1:
        raise ValueError(f"kernel {ksize} larger than padded input {tuple(spatial)} with padding {pads}")
    sizes = fft_sizes(spatial, ksize, pads)
    if weight_hat is None:
        weight_hat = kernel_spectrum(weight.to(x.dtype), sizes)
    fdims = tuple(range(-dims, 0))

    x_hat = torch.fft.rfftn(x, s=sizes, dim=fdims)  # (B, C_in, *F)
    y_hat = _mix_channels(x_hat, weight_hat.to(x_hat.dtype), groups)  # (B, C_out, *F)
    y = torch.fft.irfftn(y_hat, s=sizes, dim=fdims)

    index = [slice(None), slice(None)]
    for k, (left, _), length, s in zip(ksize, pads, out_full, stride):
        start = k - 1 - left
        index.append(slice(start, start + length, s))
    y = y[tuple(index)]
    if bias is not None:
        y = y + bias.to(y.dtype).view(1, -1, *([1] * dims))
    return y.to(out_dtype).contiguous()


class _ComplexMix(torch.autograd.Function):
    """``y_f = x_f @ w_f^T`` for a batch of frequencies, with operands BLAS takes without copies.

    Autograd's own backward multiplies the incoming gradient as it arrives, a permuted view
    of the output's layout, which complex ``bmm`` serves with one small copy per frequency
    (4-5x slower); here it is made contiguous once, and conjugates stay lazy views that
    BLAS applies itself. Shapes: ``x`` ``(F, B, cin)``, ``w`` ``(F, cout, cin)``, ``y``
    ``(F, B, cout)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return torch.bmm(x, w.transpose(1, 2).contiguous())  # a transposed complex view is slower

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # grad @ conj(w)
            grad_x = torch.bmm(grad, w.conj()).resolve_conj()
        if ctx.needs_input_grad[1]:  # grad^T @ conj(x)
            grad_w = torch.bmm(grad.transpose(1, 2), x.conj()).resolve_conj()
        return grad_x, grad_w


def _mix_channels(x_hat: Tensor, w_hat: Tensor, groups: int) -> Tensor:
    """``y[b, o, f] = sum_i x[b, i, f] * w[f, o, i]`` within each group, as batched matmuls over ``f``.

    ``w_hat`` is frequency-major ``(n_freq, C_out, C_in // groups)``.
    """
    batch, c_in = x_hat.shape[:2]
    freq = x_hat.shape[2:]
    nf, c_out, cin_g = w_hat.shape
    cout_g = c_out // groups
    if cin_g == 1 and cout_g == 1:  # depthwise: one complex product per channel
        return x_hat * w_hat.reshape(nf, c_out).t().reshape(1, c_out, *freq)
    # (F * G, B, cin_g) @ (F * G, cin_g, cout_g) -> (F * G, B, cout_g)
    xf = x_hat.reshape(batch, groups, cin_g, nf).permute(3, 1, 0, 2).reshape(nf * groups, batch, cin_g)
    wf = w_hat.reshape(nf * groups, cout_g, cin_g)
    yf = _ComplexMix.apply(xf.contiguous(), wf.contiguous())
    return yf.view(nf, groups, batch, cout_g).permute(2, 1, 3, 0).reshape(batch, c_out, *freq)


# -- dispatch ----------------------------------------------------------------------------
def conv(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: Union[int, Sequence[int]] = 1,
    padding: Padding = "same",
    causal: bool = False,
    groups: int = 1,
    fft: Union[bool, str] = "auto",
    weight_hat: Optional[Tensor] = None,
) -> Tensor:
    """N-D convolution (cross-correlation) by the spatial or the FFT path.

    Args:
        x: ``(B, C_in, *spatial)``.
        weight: ``(C_out, C_in // groups, *k)``; odd or even sizes, any shape.
        bias: ``(C_out,)`` or None.
        stride: int or per-dim ints; honoured by both paths.
        padding: see :func:`resolve_padding` (``'same'`` keeps the size at stride 1).
        causal: 1-D causal (left padding only; output ``t`` sees ``x[:t+1]``).
        groups: as in ``nn.Conv*d``.
        fft: True, False or ``'auto'`` (the measured cost model of
            :func:`flexcore.layers.fft_cost.fft_is_faster`, in its training mode when a
            gradient will flow, else its inference mode).
        weight_hat: optional precomputed :func:`kernel_spectrum` of ``weight`` at the
            :func:`fft_sizes` of this call (used by the FFT path only).
    Returns:
        ``(B, C_out, *out)``.
    """
    dims = weight.dim() - 2
    ksize = tuple(weight.shape[2:])
    strides = (stride,) * dims if isinstance(stride, int) else tuple(stride)
    pads = resolve_padding(padding, ksize, causal)
    use_fft = fft
    if fft == "auto":
        training = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        use_fft = fft_is_faster(
            x.shape[0], x.shape[1], weight.shape[0], x.shape[2:], ksize, pads, groups, device_type=x.device.type,
            kernel_maps=0 if weight_hat is not None else None, training=training,
        )
    elif not isinstance(fft, bool):
        raise ValueError(f"fft must be True, False or 'auto', got {fft!r}")
    if use_fft:
        return conv_fft(x, weight, bias, strides, pads, groups, weight_hat=weight_hat)
    return conv_spatial(x, weight, bias, strides, pads, groups)

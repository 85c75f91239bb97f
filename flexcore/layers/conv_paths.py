"""The two ways to compute a convolution: direct (``F.conv*d``) and by real FFTs.

Both take per-dim ``(left, right)`` padding (see :func:`flexcore.layers.conv_shapes.resolve_padding`)
and give the same cross-correlation. Which one runs is decided elsewhere
(:func:`flexcore.layers.fft_cost.choose_fft`); these functions only compute.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from flexcore.layers.conv_shapes import _flat_pad, _out_len, fft_sizes, needs_explicit_padding, overlapping_taps

__all__ = ["conv_spatial", "conv_fft", "kernel_spectrum"]

_CONV_FNS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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

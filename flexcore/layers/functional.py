"""Functional building blocks of continuous convolutions: grids, cropping and :func:`conv`.

:func:`conv` is the functional convolution with ``fft=True/False/'auto'``; the two paths it
dispatches to (:mod:`flexcore.layers.conv_paths`) and the shape helpers
(:mod:`flexcore.layers.conv_shapes`) are re-exported here.

Everything here is stateless. Shapes: ``x`` is ``(B, C_in, *spatial)``, ``weight`` is
``(C_out, C_in // groups, *k)`` and ``D = len(spatial)`` is 1, 2 or 3. Convolutions are
cross-correlations, as in ``torch.nn.functional.conv*d``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

# The primitives and shape helpers live below the FFT/direct decision; re-exported here, the
# functional API's one home.
from flexcore.layers.conv_paths import _mix_channels, conv_fft, conv_spatial, kernel_spectrum  # noqa: F401
from flexcore.layers.conv_shapes import (  # noqa: F401
    ConvShape, Padding, _flat_pad, fft_sizes, needs_explicit_padding, next_fast_len, overlapping_taps, plan_fft_sizes,
    resolve_padding,
)
from flexcore.layers.fft_cost import choose_fft, fft_is_faster

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
    "ConvShape",
    "fft_is_faster",
    "next_fast_len",
]


# -- relative positions ---------------------------------------------------------------
def grid_coordinates(n: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` positions in ``[-1, 1]``: ``torch.linspace(-1, 1, n)``, bit-exact with the original."""
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


def rel_positions(sizes: Sequence[int], device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Relative-position grid ``(1, D, *sizes)``; channel ``d`` varies along spatial dim ``d``.

    Per dim ``linspace(-1, 1, n)`` combined by ``meshgrid(indexing="ij")``, exactly the
    original's grid (its `ckconv/utils/grids.py`), so kernel nets see the same float32 values.
    """
    coords = [grid_coordinates(int(n), device=device, dtype=dtype) for n in sizes]
    return torch.stack(torch.meshgrid(*coords, indexing="ij"), dim=0).unsqueeze(0)


# -- dynamic cropping ---------------------------------------------------------------
def symmetric_crop(coords: Tensor, radius: float) -> slice:
    """Indices of a 1-D grid to keep so that ``[-radius, radius]`` is covered, symmetric about the centre.

    The original's rule (its Gaussian mask's ``dynamic_cropping``): if ``radius >= 1`` keep
    everything; else ``k`` is the first index among ``0 .. n//2`` with ``position > -radius``
    and indices ``k .. n-1-k`` are kept,
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

    The original's rule (its ``dynamic_cropping``): nothing is cropped unless ``|lower| < 1``;
    position ``+1`` ("now") is always kept.
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
            :func:`flexcore.layers.fft_cost.choose_fft`, in its training mode when a
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
    training = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    use_fft = choose_fft(fft, ConvShape.of(x, weight, pads, groups), device_type=x.device.type,
                         kernel_maps=0 if weight_hat is not None else None, training=training)
    if use_fft:
        return conv_fft(x, weight, bias, strides, pads, groups, weight_hat=weight_hat)
    return conv_spatial(x, weight, bias, strides, pads, groups)

"""When is the FFT convolution faster than the direct one? A cost rule fitted by measurement.

The direct convolution costs ``B * C_out * C_in/g * prod(out) * prod(k)`` multiply-adds. The
FFT path costs real transforms of input, kernel and output (``~ M * N log2 N`` each, ``M``
maps of ``N`` points) plus a complex channel mix (``B * C_out * C_in/g`` products per
frequency). Both are scaled by seconds-per-unit constants measured on this kind of device
(``tools/benchmark.py fft-calibrate`` refits them; the values and the measured crossover are
in docs/layers.md). ``'auto'`` picks the FFT path when its predicted time is lower.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["next_fast_len", "fft_is_faster", "spatial_cost", "fft_cost", "COST_CONSTANTS", "DIRECT_COST_BY_DIM"]

# Seconds per unit (direct multiply-add, transform point*log2, complex multiply-add), by device
# type; fitted with `tools/benchmark.py fft-calibrate` (see docs/layers.md for the data).
COST_CONSTANTS: Dict[str, Tuple[float, float, float]] = {
    "cpu": (1.0e-10, 2.0e-9, 1.0e-9),
    "cuda": (1.0e-12, 1.0e-11, 1.0e-11),
}
# Direct-conv seconds per multiply-add where a dimensionality differs from COST_CONSTANTS'
# (PyTorch's conv1d is ~4x less efficient per MAC than conv2d on CPU); fitted on the 1-D rows
# of `tools/benchmark.py layers` (docs/performance.md).
DIRECT_COST_BY_DIM: Dict[str, Dict[int, float]] = {"cpu": {1: 7.0e-10}}


@functools.lru_cache(maxsize=4096)
def next_fast_len(n: int) -> int:
    """Smallest even ``m >= n`` whose prime factors are 2, 3, 5 and 7 (fast for pocketfft and cuFFT).

    Even, because the real FFT of an even length halves cleanly; 1 stays 1.
    """
    if n <= 1:
        return 1
    best = 2 ** math.ceil(math.log2(n))
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                m = p3
                while m < n:
                    m *= 2
                if m < best and m % 2 == 0:
                    best = m
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best


def spatial_cost(batch: int, c_in: int, c_out: int, out_size: Sequence[int], kernel_size: Sequence[int], groups: int = 1) -> float:
    """Multiply-adds of the direct convolution."""
    return float(batch * c_out * (c_in // groups)) * math.prod(out_size) * math.prod(kernel_size)


def fft_cost(
    batch: int, c_in: int, c_out: int, sizes: Sequence[int], groups: int = 1, kernel_maps: Optional[int] = None
) -> Tuple[float, float]:
    """(transform units, complex multiply-adds) of the FFT path for transform ``sizes``.

    ``kernel_maps``: kernel transforms (default ``C_out * C_in/g``; ``H + 1`` on the
    low-rank path, 0 when the spectrum is cached); the low-rank path's extra matmul is
    counted as ``kernel_maps * C_out * C_in/g / 2`` complex multiply-adds per frequency.
    """
    points = math.prod(sizes)
    n_log_n = points * max(math.log2(points), 1.0)
    full_kernel = c_out * (c_in // groups)
    kernel_maps = full_kernel if kernel_maps is None else kernel_maps
    maps = batch * c_in + batch * c_out + kernel_maps
    freqs = points / max(sizes[-1], 1) * (sizes[-1] // 2 + 1)
    mix = float(batch * full_kernel)
    if 0 < kernel_maps < full_kernel:
        mix += kernel_maps * full_kernel / 2
    return maps * n_log_n, mix * freqs


def fft_is_faster(
    batch: int,
    c_in: int,
    c_out: int,
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    pads: Sequence[Tuple[int, int]],
    groups: int = 1,
    device_type: str = "cpu",
    kernel_maps: Optional[int] = None,
) -> bool:
    """True when the FFT path is predicted faster for this convolution (stride-1 output).

    ``kernel_maps``: see :func:`fft_cost`.
    """
    from flexcore.layers.functional import fft_sizes

    # Plain ints: under jit tracing, sizes are 0-d tensors and every step here would be traced.
    batch, c_in, c_out, groups = int(batch), int(c_in), int(c_out), int(groups)
    spatial, kernel_size = [int(n) for n in spatial], [int(k) for k in kernel_size]
    pads = [(int(a), int(b)) for a, b in pads]
    if math.prod(kernel_size) <= 1:
        return False
    out = [n + a + b - k + 1 for n, k, (a, b) in zip(spatial, kernel_size, pads)]
    if min(out) < 1:
        return False
    c_direct, c_transform, c_mix = COST_CONSTANTS.get(device_type, COST_CONSTANTS["cuda"])
    c_direct = DIRECT_COST_BY_DIM.get(device_type, {}).get(len(kernel_size), c_direct)
    t_direct = c_direct * spatial_cost(batch, c_in, c_out, out, kernel_size, groups)
    transform, mix = fft_cost(batch, c_in, c_out, fft_sizes(spatial, kernel_size, pads), groups, kernel_maps)
    return c_transform * transform + c_mix * mix < t_direct

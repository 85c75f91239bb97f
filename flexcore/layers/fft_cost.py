"""When is the FFT convolution faster than the direct one? A cost model fitted by measurement.

Both paths' times are predicted as ``features . constants`` (:func:`direct_features`,
:func:`fft_features`) with constants measured per device type, dimensionality (1-D vs 2-D/3-D)
and mode (``'train'``: forward + backward; ``'eval'``: forward only, the backward of a
direct convolution costs 2-7x its forward on CPU, depending on the kernel size):

- direct: multiply-adds ``B * C_out * C_in/g * prod(out) * prod(k)`` at a per-MAC cost that
  depends on the kernel-size band (oneDNN/cuDNN switch algorithms with the kernel size) plus
  a per-MAC penalty ``~ 1/(C_in/g)`` (few input channels vectorise badly), memory traffic
  and a fixed per-call overhead;
- FFT: real transforms of input, output and kernel (``~ maps * N log2 N``), the complex
  channel mix (``B * C_out * C_in/g`` products per frequency), its operand copies and a
  fixed overhead.

``tools/benchmark.py fft-calibrate`` measures both paths on a grid of shapes and refits the
constants (paste its output into ``COST_MODELS``); the data, the fit and the resulting
'auto' quality are in docs/layers.md. ``'auto'`` picks the FFT path when its predicted time
is lower.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    "next_fast_len",
    "fft_is_faster",
    "spatial_cost",
    "fft_cost",
    "direct_features",
    "fft_features",
    "CostModel",
    "COST_MODELS",
    "cost_model",
    "predict_seconds",
    "KERNEL_BANDS",
]

# Upper bounds of the kernel-size bands (largest kernel side); a last band takes the rest.
KERNEL_BANDS: Tuple[int, ...] = (7, 15)


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Seconds per unit of each feature (see :func:`direct_features`, :func:`fft_features`)."""

    direct: Tuple[float, ...]  # per band: (per MAC, per MAC / (C_in/g)), flattened; then memory, overhead
    fft: Tuple[float, float, float, float]  # transform, complex MAC, mix operand element, overhead

    def direct_seconds(self, features: Sequence[float]) -> float:
        return sum(f * c for f, c in zip(features, self.direct))

    def fft_seconds(self, features: Sequence[float]) -> float:
        return sum(f * c for f, c in zip(features, self.fft))


def _model(direct, fft) -> CostModel:
    return CostModel(tuple(float(v) for v in direct), tuple(float(v) for v in fft))


# Fitted with `tools/benchmark.py fft-calibrate` (2 threads, wall clock, quiet 2-core AMD EPYC
# VM, torch 2.14.1, 2026-11-26); key (device type, 1 for 1-D or 2 for 2-D/3-D, mode).
# CUDA: not measured yet (no GPU in the project's sessions so far); rough FLOP-rate guesses.
COST_MODELS: Dict[Tuple[str, int, str], CostModel] = {
    ("cpu", 2, "train"): _model(
        (4.48e-11, 1.43e-10, 5.13e-11, 6.54e-10, 6.2e-11, 2.62e-09, 2.09e-09, 0.000637),
        (2.09e-10, 9.79e-11, 2.9e-08, 0.000759),
    ),
    ("cpu", 2, "eval"): _model(
        (1.26e-11, 3.69e-11, 1.39e-11, 5.87e-10, 1.59e-11, 5.11e-10, 7.1e-10, 0.000184),
        (0, 2.05e-10, 8.3e-09, 0.000353),
    ),
    ("cpu", 1, "train"): _model(
        (2.08e-11, 2.28e-09, 2.08e-11, 2.28e-09, 0, 3.11e-09, 2.85e-10, 0.000523),
        (1.17e-09, 0, 0, 0.000992),
    ),
    ("cpu", 1, "eval"): _model(
        (1.01e-11, 2.68e-11, 1.01e-11, 2.68e-11, 3.34e-12, 2.23e-10, 7.1e-10, 0.00019),
        (2.61e-10, 0, 0, 0.000267),
    ),
    ("cuda", 2, "train"): _model((3e-12, 0.0) * 3 + (0.0, 2e-5), (3e-11, 3e-11, 0.0, 6e-5)),
    ("cuda", 2, "eval"): _model((1e-12, 0.0) * 3 + (0.0, 1e-5), (1e-11, 1e-11, 0.0, 3e-5)),
    ("cuda", 1, "train"): _model((3e-12, 0.0) * 3 + (0.0, 2e-5), (3e-11, 3e-11, 0.0, 6e-5)),
    ("cuda", 1, "eval"): _model((1e-12, 0.0) * 3 + (0.0, 1e-5), (1e-11, 1e-11, 0.0, 3e-5)),
}


def cost_model(device_type: str, dims: int, training: bool) -> CostModel:
    """The constants for a device type (unknown types use CUDA's), dimensionality and mode."""
    device = device_type if any(key[0] == device_type for key in COST_MODELS) else "cuda"
    return COST_MODELS[(device, 1 if dims == 1 else 2, "train" if training else "eval")]


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


def _band(kernel_size: Sequence[int]) -> int:
    side = max(kernel_size)
    for i, bound in enumerate(KERNEL_BANDS):
        if side <= bound:
            return i
    return len(KERNEL_BANDS)


def direct_features(
    batch: int, c_in: int, c_out: int, spatial: Sequence[int], out_size: Sequence[int], kernel_size: Sequence[int],
    groups: int = 1,
) -> List[float]:
    """Features of the direct path, in :attr:`CostModel.direct` order."""
    macs = spatial_cost(batch, c_in, c_out, out_size, kernel_size, groups)
    features = [0.0] * (2 * (len(KERNEL_BANDS) + 1))
    band = _band(kernel_size)
    features[2 * band] = macs
    features[2 * band + 1] = macs / max(c_in // groups, 1)
    memory = float(batch) * (c_in * math.prod(spatial) + c_out * math.prod(out_size))
    return features + [memory, 1.0]


def fft_cost(
    batch: int, c_in: int, c_out: int, sizes: Sequence[int], groups: int = 1, kernel_maps: Optional[int] = None
) -> Tuple[float, float]:
    """(transform units, complex multiply-adds) of the FFT path for transform ``sizes``.

    ``kernel_maps``: kernel transforms (default ``C_out * C_in/g``; ``H + 1`` on the
    low-rank path, 0 when the spectrum is cached); the low-rank path's spectrum GEMM (real,
    ``(2F, H+1) @ (H+1, C_out C_in/g)``) is counted as ``kernel_maps * C_out * C_in/g / 2``
    complex multiply-adds per frequency.
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


def fft_features(
    batch: int, c_in: int, c_out: int, sizes: Sequence[int], groups: int = 1, kernel_maps: Optional[int] = None
) -> List[float]:
    """Features of the FFT path, in :attr:`CostModel.fft` order."""
    transform, mix = fft_cost(batch, c_in, c_out, sizes, groups, kernel_maps)
    points = math.prod(sizes)
    freqs = points / max(sizes[-1], 1) * (sizes[-1] // 2 + 1)
    operands = freqs * (batch * c_in + batch * c_out + c_out * (c_in // groups))
    return [transform, mix, operands, 1.0]


def predict_seconds(
    batch: int,
    c_in: int,
    c_out: int,
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    pads: Sequence[Tuple[int, int]],
    groups: int = 1,
    device_type: str = "cpu",
    kernel_maps: Optional[int] = None,
    training: bool = True,
) -> Tuple[float, float]:
    """Predicted (direct, FFT) seconds of one convolution (stride-1 output); ``inf`` where
    the kernel does not fit the padded input."""
    from flexcore.layers.functional import fft_sizes

    # Plain ints: under jit tracing, sizes are 0-d tensors and every step here would be traced.
    batch, c_in, c_out, groups = int(batch), int(c_in), int(c_out), int(groups)
    spatial, kernel_size = [int(n) for n in spatial], [int(k) for k in kernel_size]
    pads = [(int(a), int(b)) for a, b in pads]
    out = [n + a + b - k + 1 for n, k, (a, b) in zip(spatial, kernel_size, pads)]
    if min(out) < 1:
        return math.inf, math.inf
    model = cost_model(device_type, len(kernel_size), training)
    direct = model.direct_seconds(direct_features(batch, c_in, c_out, spatial, out, kernel_size, groups))
    sizes = fft_sizes(spatial, kernel_size, pads)
    fft = model.fft_seconds(fft_features(batch, c_in, c_out, sizes, groups, kernel_maps))
    return direct, fft


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
    training: bool = True,
) -> bool:
    """True when the FFT path is predicted faster for this convolution (stride-1 output).

    ``kernel_maps``: see :func:`fft_cost`; ``training``: forward + backward (True) or
    forward only (inference).
    """
    if math.prod(int(k) for k in kernel_size) <= 1:
        return False
    direct, fft = predict_seconds(batch, c_in, c_out, spatial, kernel_size, pads, groups, device_type, kernel_maps, training)
    return fft < direct

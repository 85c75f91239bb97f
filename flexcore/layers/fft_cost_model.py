"""The FFT/direct cost model: features of each path and their shipped per-device constants.

Both paths' times are predicted as ``features . constants`` (:func:`direct_features`,
:func:`fft_features`); :mod:`flexcore.layers.fft_cost` describes the model and makes the
choice, :mod:`flexcore.layers.fft_calibration` stores per-machine constants.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

from flexcore.layers.conv_shapes import ConvShape, fft_sizes

__all__ = [
    "KERNEL_BANDS",
    "CostModel",
    "COST_MODELS",
    "spatial_cost",
    "direct_features",
    "fft_features",
    "conv_features",
]

# Upper bounds of the kernel-size bands (largest kernel side); a last band takes the rest.
KERNEL_BANDS: Tuple[int, ...] = (7, 15)


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Seconds per unit of each feature (see :func:`direct_features`, :func:`fft_features`)."""

    direct: Tuple[float, ...]  # per band: (per MAC, per MAC / (C_in/g)), flattened; then memory, overhead
    fft: Tuple[float, ...]  # data transform, kernel transform, complex MAC, mix operand element, overhead

    def direct_seconds(self, features: Sequence[float]) -> float:
        return sum(f * c for f, c in zip(features, self.direct))

    def fft_seconds(self, features: Sequence[float]) -> float:
        return sum(f * c for f, c in zip(features, self.fft))


def _model(direct, fft) -> CostModel:
    return CostModel(tuple(float(v) for v in direct), tuple(float(v) for v in fft))


# Fitted by `tools/benchmark.py fft-calibrate --threads 2` on a quiet 2-core AMD EPYC VM (torch
# 2.14.1, wall clock, 2026-11-26); its measurements are docs/data/fft_calibration_cpu.json
# (`fft-calibrate --from-json` refits them). Key: (device type, 1 for 1-D or 2 for 2-D/3-D,
# mode). CUDA: not measured yet (no GPU in this project's sessions): rough FLOP-rate guesses,
# so on a GPU prefer `set_fft_autotune(True)` or calibrate.
COST_MODELS: Dict[Tuple[str, int, str], CostModel] = {
    ("cpu", 2, "train"): _model(
        (4.54e-11, 0, 5.1e-11, 5.62e-10, 5.56e-11, 2.63e-09, 2.46e-09, 0.000823),
        (3.01e-10, 1.18e-09, 6.05e-10, 8.51e-09, 0.00159),
    ),
    ("cpu", 2, "eval"): _model(
        (1.28e-11, 3.7e-11, 1.51e-11, 4.98e-10, 1.42e-11, 5.49e-10, 2.88e-10, 0.000242),
        (5.23e-11, 1.45e-10, 1.72e-10, 6.74e-09, 0.000563),
    ),
    ("cpu", 1, "train"): _model(
        (3.79e-11, 1.72e-09, 3.79e-11, 1.72e-09, 2.5e-11, 2.44e-09, 5.43e-10, 0.00074),
        (5.36e-10, 9.91e-10, 3.68e-10, 0, 0.00131),
    ),
    ("cpu", 1, "eval"): _model(
        (8.3e-12, 1.24e-10, 8.3e-12, 1.24e-10, 6.4e-12, 1.67e-10, 4.25e-10, 0.000233),
        (9.51e-11, 2.74e-10, 0, 2.42e-09, 0.000433),
    ),
    ("cuda", 2, "train"): _model((3e-12, 0.0) * 3 + (0.0, 2e-5), (3e-11, 3e-11, 3e-11, 0.0, 6e-5)),
    ("cuda", 2, "eval"): _model((1e-12, 0.0) * 3 + (0.0, 1e-5), (1e-11, 1e-11, 1e-11, 0.0, 3e-5)),
    ("cuda", 1, "train"): _model((3e-12, 0.0) * 3 + (0.0, 2e-5), (3e-11, 3e-11, 3e-11, 0.0, 6e-5)),
    ("cuda", 1, "eval"): _model((1e-12, 0.0) * 3 + (0.0, 1e-5), (1e-11, 1e-11, 1e-11, 0.0, 3e-5)),
}


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


def fft_features(
    batch: int, c_in: int, c_out: int, sizes: Sequence[int], groups: int = 1, kernel_maps: Optional[int] = None
) -> List[float]:
    """Features of the FFT path for transform ``sizes``, in :attr:`CostModel.fft` order.

    ``kernel_maps``: kernel transforms (default ``C_out * C_in/g``; ``H + 1`` on the
    low-rank path, 0 when the spectrum is cached); the low-rank path's spectrum GEMM (real,
    ``(2F, H+1) @ (H+1, C_out C_in/g)``) is counted as ``kernel_maps * C_out * C_in/g / 2``
    complex multiply-adds per frequency.
    """
    points = math.prod(sizes)
    n_log_n = points * max(math.log2(points), 1.0)
    full_kernel = c_out * (c_in // groups)
    kernel_maps = full_kernel if kernel_maps is None else kernel_maps
    freqs = points / max(sizes[-1], 1) * (sizes[-1] // 2 + 1)
    mix = float(batch * full_kernel)
    if 0 < kernel_maps < full_kernel:
        mix += kernel_maps * full_kernel / 2
    operands = freqs * (batch * c_in + batch * c_out + full_kernel)
    return [batch * (c_in + c_out) * n_log_n, kernel_maps * n_log_n, mix * freqs, operands, 1.0]


def conv_features(shape: ConvShape, kernel_maps: Optional[int] = None) -> Optional[Tuple[List[float], List[float]]]:
    """(direct, FFT) features of one convolution (stride-1 output); None where the kernel does
    not fit the padded input."""
    out = shape.out_size()
    if min(out) < 1:
        return None
    batch, c_in, c_out, groups = shape.batch, shape.c_in, shape.c_out, shape.groups
    return (direct_features(batch, c_in, c_out, shape.spatial, out, shape.kernel_size, groups),
            fft_features(batch, c_in, c_out, fft_sizes(shape.spatial, shape.kernel_size, shape.pads), groups,
                         kernel_maps))

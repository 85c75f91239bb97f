"""When is the FFT convolution faster than the direct one? A cost model fitted by measurement.

This module makes the choice (:func:`choose_fft`, the one place every convolution asks);
the features and shipped constants are in :mod:`flexcore.layers.fft_cost_model`.
Both paths' times are predicted as ``features . constants`` (:func:`direct_features`,
:func:`fft_features`) with constants measured per device type, dimensionality (1-D vs 2-D/3-D)
and mode (``'train'``: forward + backward; ``'eval'``: forward only, the backward of a
direct convolution costs 0.5-6x its forward on CPU, median 2.4x, most for large kernels):

- direct: multiply-adds ``B * C_out * C_in/g * prod(out) * prod(k)`` at a per-MAC cost that
  depends on the kernel-size band (oneDNN/cuDNN switch algorithms with the kernel size) plus
  a per-MAC penalty ``~ 1/(C_in/g)`` (few input channels vectorise badly), memory traffic
  and a fixed per-call overhead;
- FFT: real transforms of input and output, and of the kernel (``~ maps * N log2 N``,
  two features: a kernel is zero-extended to the transform size), the complex
  channel mix (``B * C_out * C_in/g`` products per frequency), its operand copies and a
  fixed overhead.

``tools/benchmark.py fft-calibrate`` measures both paths on a grid of shapes and refits the
constants; it saves them for this machine (CPU model + torch version), and 'auto' uses them
from then on (:mod:`flexcore.layers.fft_calibration`). The data, the fit and the resulting
'auto' quality are in docs/layers.md. ``'auto'`` picks the FFT path when its predicted time
is lower; inference choices close to the crossover are timed once per shape.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from typing import Dict, Iterator, Optional, Tuple, Union

import torch

from flexcore.layers.conv_paths import conv_fft, conv_spatial, kernel_spectrum
from flexcore.layers.conv_shapes import (
    ConvShape, needs_explicit_padding, next_fast_len, overlapping_taps, plan_fft_sizes,
)
from flexcore.layers.fft_calibration import machine_cost_models
from flexcore.layers.fft_cost_model import (  # noqa: F401  (re-exported: the cost model's public names)
    COST_MODELS, KERNEL_BANDS, CostModel, conv_features, direct_features, fft_features, spatial_cost,
)
from flexcore.utils.timing import time_interleaved

logger = logging.getLogger(__name__)

__all__ = [
    "ConvShape",
    "choose_fft",
    "next_fast_len",
    "fft_is_faster",
    "spatial_cost",
    "direct_features",
    "fft_features",
    "conv_features",
    "CostModel",
    "COST_MODELS",
    "cost_model",
    "predict_seconds",
    "KERNEL_BANDS",
    "set_fft_autotune",
    "fft_autotune_enabled",
    "fft_autotune_decisions",
    "clear_fft_autotune",
    "fft_autotune_scope",
    "AUTOTUNE_BAND",
    "INFERENCE_AUTOTUNE_BAND",
]


def cost_model(device_type: str, dims: int, training: bool) -> CostModel:
    """The constants for a device type (unknown types use CUDA's), dimensionality and mode:
    this machine's ``fft-calibrate`` result where one is saved (see
    :mod:`flexcore.layers.fft_calibration`), else the shipped :data:`COST_MODELS`."""
    device = device_type if any(key[0] == device_type for key in COST_MODELS) else "cuda"
    key = (device, 1 if dims == 1 else 2, "train" if training else "eval")
    calibrated = machine_cost_models(device)
    return calibrated.get(key) or COST_MODELS[key]


def predict_seconds(
    shape: ConvShape, *, device_type: str = "cpu", kernel_maps: Optional[int] = None, training: bool = True
) -> Tuple[float, float]:
    """Predicted (direct, FFT) seconds of one convolution (stride-1 output); ``inf`` where
    the kernel does not fit the padded input."""
    features = conv_features(shape, kernel_maps=kernel_maps)
    if features is None:
        return math.inf, math.inf
    spatial, ksize, pads = shape.spatial, shape.kernel_size, shape.pads
    if needs_explicit_padding(spatial, ksize, pads):  # the direct path convolves only the taps that meet the input
        taps, pads = overlapping_taps(spatial, ksize, pads, (1,) * len(ksize))
        cropped = dataclasses.replace(shape, kernel_size=tuple(t.stop - t.start for t in taps), pads=pads)
        features = (conv_features(cropped)[0], features[1])
    model = cost_model(device_type, shape.dims, training)
    return model.direct_seconds(features[0]), model.fft_seconds(features[1])


# -- measured choice near the crossover ------------------------------------------------
AUTOTUNE_BAND = 2.0  # measure only when the predicted times are within this factor
# Inference choices are measured where predictions are within this factor: across CPUs the
# predicted FFT/direct ratio moved by up to 3.3x (docs/layers.md), and an inference choice
# is made once per shape (eval cache, baked conv), so timing it is a one-off.
INFERENCE_AUTOTUNE_BAND = 4.0
_autotune = {
    "enabled": os.environ.get("FLEXCORE_FFT_AUTOTUNE", "0") not in ("", "0"),
    "inference": os.environ.get("FLEXCORE_FFT_AUTOTUNE_INFERENCE", "1") not in ("", "0"),
}
# (device type, ConvShape, kernel_maps, training) -> (fft faster, direct seconds, fft seconds)
_measured: Dict[Tuple[str, ConvShape, Optional[int], bool], Tuple[bool, float, float]] = {}


def set_fft_autotune(enabled: bool = True, inference: Optional[bool] = None) -> None:
    """Time both paths (once per shape) where the cost model cannot tell them apart.

    ``enabled``: for every choice (training ones too). ``inference``: for inference choices
    (forward only; default on, ``FLEXCORE_FFT_AUTOTUNE_INFERENCE=0`` turns it off, and it is
    off in a multi-process group, where ranks must take the same path); None leaves that
    setting as it is. Neither measures under ``torch.use_deterministic_algorithms(True)``
    unless asked per call (``autotune=True``).
    """
    _autotune["enabled"] = bool(enabled)
    if inference is not None:
        _autotune["inference"] = bool(inference)


def fft_autotune_enabled(training: bool = True) -> bool:
    """Whether a choice in this mode is measured by default (near the crossover)."""
    return _autotune_band(None, training) is not None


def _autotune_band(autotune: Optional[bool], training: bool) -> Optional[float]:
    """How close the predictions must be for a measured choice; None: do not measure."""
    band = AUTOTUNE_BAND if training else INFERENCE_AUTOTUNE_BAND
    if autotune is not None:
        return band if autotune else None
    if torch.are_deterministic_algorithms_enabled():  # a timing-dependent path is not reproducible
        return None
    if _distributed():  # ranks timing separately could take different paths and disagree
        return None if not _autotune["enabled"] else band
    if _autotune["enabled"] or (not training and _autotune["inference"]):
        return band
    return None


def fft_autotune_decisions() -> Dict[Tuple[str, ConvShape, Optional[int], bool], Tuple[bool, float, float]]:
    """``{(device type, ConvShape, kernel_maps, training): (fft faster, direct seconds, fft seconds)}``
    measured so far in this process."""
    return dict(_measured)


def clear_fft_autotune() -> None:
    _measured.clear()


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def fft_autotune_scope(enabled: bool, inference: Optional[bool] = None) -> Iterator[None]:
    """Autotune on inside the block when ``enabled`` (else left as it is); measured inference
    picks set to ``inference`` (None: left as they are); the previous switches after."""
    before = dict(_autotune)
    if enabled:
        _autotune["enabled"] = True
    if inference is not None:
        _autotune["inference"] = bool(inference)
    try:
        yield
    finally:
        _autotune.update(before)


def _can_measure(device_type: str) -> bool:
    if device_type not in ("cpu", "cuda") or torch.jit.is_tracing():
        return False
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return not (compiling is not None and compiling())


def _measure(
    shape: ConvShape, device_type: str, kernel_maps: Optional[int], training: bool
) -> Tuple[bool, float, float]:
    """Time the direct and the FFT convolution of this shape on random data (float32).

    With a full kernel the FFT path is timed as it runs (kernel transformed in the call). For
    a cached spectrum (``kernel_maps=0``) it is timed with a ready one; on the low-rank path
    (``H + 1`` maps) the ready spectrum's time gets the cost model's estimate of the basis
    transforms and the spectrum GEMM added.
    """
    batch, c_in, c_out, groups = shape.batch, shape.c_in, shape.c_out, shape.groups
    spatial, kernel_size, pads = shape.spatial, shape.kernel_size, shape.pads
    device = torch.device(device_type)
    generator = torch.Generator().manual_seed(0)  # leaves the global RNG streams alone
    x = torch.rand(batch, c_in, *spatial, generator=generator).to(device)
    w = torch.rand(c_out, c_in // groups, *kernel_size, generator=generator).to(device)
    stride = (1,) * len(spatial)
    sizes = plan_fft_sizes(spatial, kernel_size, pads)
    full = c_out * (c_in // groups)
    spectrum = None if kernel_maps is None or kernel_maps >= full else kernel_spectrum(w, sizes)
    if training:
        x, w = x.requires_grad_(), w.requires_grad_()
        spectrum = None if spectrum is None else spectrum.requires_grad_()

    def run(out_fn):
        def go():
            out = out_fn()
            if training:
                out.sum().backward()
        return go

    direct = run(lambda: conv_spatial(x, w, None, stride, pads, groups))
    if spectrum is None:
        fft = run(lambda: conv_fft(x, w, None, stride, pads, groups))
    else:
        fft = run(lambda: conv_fft(x, None, None, stride, pads, groups, weight_hat=spectrum, kernel_size=kernel_size))
    with torch.enable_grad() if training else torch.no_grad():
        t_direct, t_fft = (min(s) for s in time_interleaved([direct, fft], 3, 0.01, device_type=device_type))
    if spectrum is not None and kernel_maps:  # low-rank: add the basis transforms and the GEMM
        model = cost_model(device_type, len(kernel_size), training)
        features = fft_features(batch, c_in, c_out, sizes, groups, kernel_maps)
        cached = fft_features(batch, c_in, c_out, sizes, groups, 0)
        t_fft += sum(c * (f - g) for c, f, g in zip(model.fft, features, cached))
    return t_fft < t_direct, t_direct, t_fft


def fft_is_faster(
    shape: ConvShape,
    *,
    device_type: str = "cpu",
    kernel_maps: Optional[int] = None,
    training: bool = True,
    autotune: Optional[bool] = None,
) -> bool:
    """True when the FFT path is predicted faster for this convolution (stride-1 output).

    ``kernel_maps``: see :func:`fft_features`; ``training``: forward + backward (True) or
    forward only (inference). ``autotune``: measure close calls (None: as
    :func:`set_fft_autotune` says: by default inference choices within
    :data:`INFERENCE_AUTOTUNE_BAND` are measured, training ones are not).
    """
    if math.prod(shape.kernel_size) <= 1:
        return False
    direct, fft = predict_seconds(shape, device_type=device_type, kernel_maps=kernel_maps, training=training)
    band = _autotune_band(autotune, training)
    if band is None or not (fft < direct * band and direct < fft * band and _can_measure(device_type)):
        return fft < direct
    key = (device_type, shape, kernel_maps, bool(training))
    if key not in _measured:
        _measured[key] = _measure(shape, device_type, kernel_maps, training)
        logger.debug("fft autotune %s: direct %.3g s, fft %.3g s", key, *_measured[key][1:])
    return _measured[key][0]


def choose_fft(
    fft: Union[bool, str],
    shape: ConvShape,
    *,
    device_type: str = "cpu",
    kernel_maps: Optional[int] = None,
    training: bool = True,
) -> bool:
    """Whether a convolution of this :class:`ConvShape` takes the FFT path: every layer,
    baked conv and :func:`flexcore.layers.functional.conv` asks here.

    ``fft``: True or False is obeyed; ``'auto'`` asks :func:`fft_is_faster` (cost model,
    measured near the crossover as :func:`set_fft_autotune` says). ``kernel_maps`` and
    ``training`` as there: 0 for a spectrum computed once and reused, forward only when no
    gradient will flow.
    """
    if fft is True or fft is False:
        return fft
    if isinstance(fft, str) and fft == "auto":
        return fft_is_faster(shape, device_type=device_type, kernel_maps=kernel_maps, training=training)
    raise ValueError(f"fft must be True, False or 'auto', got {fft!r}")

"""Anti-aliasing regulariser: keep every continuous kernel's bandwidth under its grid's Nyquist.

A Gabor filter ``exp(-½(γ(x−μ))²)·sin(Wx+b)`` holds frequencies up to about
``|W|/2π + |γ|·s/2π`` cycles per unit of the ``[-1, 1]`` coordinate (``s`` =
``gauss_stddevs``: how many standard deviations of the Gaussian's spectrum count). A
FlexConv's Gaussian mask adds ``max_d(1/|σ_d|)·s/2π``. A grid of ``k`` points spans two
units, so its Nyquist frequency is ``(k − 1)/4`` (as in the original's `antialiasing.py`). The penalty pushes the
frequencies of every layer below it:

- ``method='together'``: each filter ``l`` of a layer gets ``1/n_filters`` of the Nyquist
  budget (and of the mask term, for ``gabor+mask``): ``F_l = f_l + f_mask/n``, target ``f_Nyq/n``.
- ``method='summed'``: one term per layer, ``F = Σ_l f_l (+ f_mask)``, target ``f_Nyq``.

``per_unit=True`` (default) takes, as the paper intends, the maximum over hidden units
(and dims) of ``|W_h|/2π + |γ_h|·s/2π``. ``per_unit=False`` reproduces the original code,
whose broadcasting added the two maxima separately, ``max|W|/2π + max|γ|·s/2π`` (an upper
bound of the former); use it to match the original's numbers.

Works with every kernel net exposing ``frequency_terms()`` (MAGNet, GaborNet; FourierNet
and SIREN have no Gaussian term), inside every continuous convolution of the model.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from flexcore.registry import REGULARIZERS

__all__ = [
    "AntiAliasing",
    "LayerFrequencies",
    "TARGETS",
    "METHODS",
    "PENALTIES",
    "nyquist_frequency",
    "gaussian_frequency",
    "filter_frequencies",
    "layer_frequencies",
    "frequency_summaries",
]

TARGETS = ("gabor", "gabor+mask", "sines", "gausses")
METHODS = ("together", "summed")
PENALTIES = ("l2_relu", "offset_elu")
_TWO_PI = 2.0 * math.pi


def nyquist_frequency(grid_length: float) -> float:
    """Nyquist frequency (cycles per unit) of ``grid_length`` samples over ``[-1, 1]``: ``(k − 1)/4``."""
    return (float(grid_length) - 1.0) / 4.0


def gaussian_frequency(gamma: torch.Tensor, gauss_stddevs: float) -> torch.Tensor:
    """Frequency extent of a Gaussian window of inverse width ``gamma``: ``|γ|·s/2π``."""
    return gamma.abs() * gauss_stddevs / _TWO_PI


def filter_frequencies(
    terms: Sequence[Tuple[torch.Tensor, Optional[torch.Tensor]]],
    target: str = "gabor",
    gauss_stddevs: float = 2.0,
    per_unit: bool = True,
) -> torch.Tensor:
    """Maximum frequency of each filter of one kernel net, in cycles per unit.

    Args:
        terms: the kernel net's ``frequency_terms()``: per filter ``(W, gamma)``, ``W``
            ``(H, D)`` in radians per unit, ``gamma`` ``(H, D)``, ``(H, 1)`` or None.
        target: ``gabor``/``gabor+mask`` (sine + Gaussian), ``sines`` or ``gausses`` alone.
        gauss_stddevs: ``s``.
        per_unit: combine sine and Gaussian per hidden unit and dim before the maximum
            (paper); False adds the separate maxima (original code).

    Returns:
        ``(n_filters,)``.
    """
    freqs = []
    for weight, gamma in terms:
        sines = weight.abs() / _TWO_PI
        gausses = gaussian_frequency(gamma, gauss_stddevs) if gamma is not None else None
        if target == "sines" or (gausses is None and target != "gausses"):
            freqs.append(sines.max())
        elif target == "gausses":
            freqs.append(gausses.max() if gausses is not None else sines.new_zeros(()))
        elif per_unit:
            freqs.append((sines + gausses).max())  # (H, D) + (H, D|1): per unit and dim
        else:
            freqs.append(sines.max() + gausses.max())
    return torch.stack(freqs)


@dataclasses.dataclass
class LayerFrequencies:
    """One continuous conv's frequencies (cycles per unit) and its Nyquist frequency.

    Attributes:
        name: module name in the model.
        filters: ``(n_filters,)`` per-filter maxima.
        mask: the mask's frequency (scalar tensor) or None when the layer has no Gaussian mask
            (or the target does not include it).
        nyquist: Nyquist frequency of the layer's grid (or of ``res``); None if not asked for.
    """

    name: str
    filters: torch.Tensor
    mask: Optional[torch.Tensor]
    nyquist: Optional[float]


def _kernel_net_convs(model: nn.Module) -> Iterator[Tuple[str, nn.Module, nn.Module]]:
    """``(name, conv, kernel_net)`` for every module whose kernel net has ``frequency_terms``."""
    for name, module in model.named_modules():
        net = getattr(module, "kernel_net", None)
        if isinstance(net, nn.Module) and callable(getattr(net, "frequency_terms", None)):
            yield name, module, net


def _mask_inverse_widths(conv: nn.Module) -> Optional[torch.Tensor]:
    """``(D,)`` inverse widths ``1/|σ_d|`` of the conv's Gaussian mask, or None without one.

    Masks say so through an ``inverse_widths()`` hook; a mask with a ``sigma`` parameter
    (flexcore's GaussianMask) is read directly.
    """
    mask = getattr(conv, "mask", None)
    if mask is None:
        return None
    hook = getattr(mask, "inverse_widths", None)
    if callable(hook):
        return hook()
    sigma = getattr(mask, "sigma", None)
    return 1.0 / sigma.abs() if isinstance(sigma, torch.Tensor) else None


def _grid_length(conv: nn.Module, name: str) -> int:
    """Smallest side of the conv's full position grid (``grid_size()``, else an int ``horizon``)."""
    try:
        sizes = conv.grid_size() if callable(getattr(conv, "grid_size", None)) else ()
    except RuntimeError:  # not fixed by a forward yet: a fixed int horizon still says it
        horizon = getattr(conv, "horizon", None)
        sizes = (horizon,) if isinstance(horizon, int) else ()
    if not sizes or min(sizes) < 2:
        raise RuntimeError(
            f"AntiAliasing: continuous conv {name!r} has no grid size yet (it is fixed by the first "
            f"forward pass or set_resolution). Run a forward pass first or pass `res` (the kernel "
            f"size whose Nyquist frequency to use, e.g. 33 for 32px images)."
        )
    return int(min(sizes))


def layer_frequencies(
    model: nn.Module,
    target: str = "gabor",
    gauss_stddevs: float = 2.0,
    per_unit: bool = True,
    res: Optional[int] = None,
    nyquist: bool = True,
) -> List[LayerFrequencies]:
    """Frequencies of every continuous conv of ``model`` whose kernel net has ``frequency_terms()``.

    Args:
        model: any module.
        target, gauss_stddevs, per_unit: see :func:`filter_frequencies`.
        res: grid length for the Nyquist frequency; None = each layer's own grid length.
        nyquist: compute the Nyquist frequency (False leaves it None; for logging).
    """
    layers = []
    for name, conv, net in _kernel_net_convs(model):
        filters = filter_frequencies(net.frequency_terms(), target, gauss_stddevs, per_unit)
        mask = None
        if target == "gabor+mask":
            inverse = _mask_inverse_widths(conv)
            if inverse is not None:
                mask = gaussian_frequency(inverse.max(), gauss_stddevs)
        limit = None
        if nyquist:
            limit = nyquist_frequency(res if res is not None else _grid_length(conv, name))
        layers.append(LayerFrequencies(name, filters, mask, limit))
    if not layers:
        raise ValueError(
            f"AntiAliasing: {type(model).__name__} has no continuous convolution whose kernel net "
            f"exposes frequency_terms() (e.g. FlexConv/CKConv with MAGNet or GaborNet kernels); "
            f"remove the regulariser or use such layers."
        )
    if target == "gabor+mask" and all(layer.mask is None for layer in layers):
        raise ValueError(
            "AntiAliasing: target 'gabor+mask' needs layers with a Gaussian mask (FlexConv); this model "
            "has none. Use target='gabor'."
        )
    return layers


def _penalty(excess: torch.Tensor, penalty: str) -> torch.Tensor:
    if penalty == "l2_relu":
        return torch.relu(excess).square().sum()
    # offset_elu: a smooth stand-in for l2_relu, linear above the offset (4) and scaled by 5.
    return (5.0 * torch.where(excess > 4.0, excess - 3.0, torch.exp(excess - 4.0))).sum()


@REGULARIZERS.register()
class AntiAliasing:
    """Penalty on kernel frequencies above the grid's Nyquist frequency (FlexConv's anti-aliasing regularisation).

    ``AntiAliasing(**hp)(model)`` returns ``factor · Σ penalty(F − target)`` as a scalar tensor.

    Args:
        factor: weight of the term (0.1 in the paper's cross-resolution runs).
        target: ``gabor`` (kernel nets), ``gabor+mask`` (plus the FlexConv mask), or
            ``sines`` / ``gausses`` (one part alone).
        method: ``together`` (per filter, Nyquist shared among a layer's filters) or
            ``summed`` (per layer).
        penalty: ``l2_relu`` (squared excess) or ``offset_elu`` (smooth, linear far above).
        gauss_stddevs: standard deviations of a Gaussian's spectrum counted as its bandwidth.
        res: grid length whose Nyquist frequency is used for every layer; None = each layer's
            own grid length (``min(conv.grid_size())``, the uncropped kernel size at the current
            resolution; the original always needed it given).
        per_unit: paper's per-unit frequencies (True) or the original code's separate maxima.
    """

    def __init__(
        self,
        factor: float = 0.1,
        target: str = "gabor",
        method: str = "together",
        penalty: str = "l2_relu",
        gauss_stddevs: float = 2.0,
        res: Optional[int] = None,
        per_unit: bool = True,
    ):
        if method == "together+mask":  # the original's name for `together` with a mask
            method = "together"
        for arg, value, options in (("target", target, TARGETS), ("method", method, METHODS),
                                    ("penalty", penalty, PENALTIES)):
            if value not in options:
                raise ValueError(f"AntiAliasing: unknown {arg} {value!r}; use one of {options}.")
        if res is not None and res < 2:
            raise ValueError(f"AntiAliasing: res must be a grid length >= 2 (e.g. 33), got {res}.")
        self.factor = factor
        self.target = target
        self.method = method
        self.penalty = penalty
        self.gauss_stddevs = gauss_stddevs
        self.res = res
        self.per_unit = per_unit

    def terms(self, model: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(F, target)``: the penalised frequencies and their Nyquist targets, flat."""
        layers = layer_frequencies(model, self.target, self.gauss_stddevs, self.per_unit, self.res)
        freqs, targets = [], []
        for layer in layers:
            n = layer.filters.numel()
            if self.method == "together":
                f = layer.filters if layer.mask is None else layer.filters + layer.mask / n
                freqs.append(f)
                targets.append(torch.full_like(f, layer.nyquist / n))
            else:
                f = layer.filters.sum() if layer.mask is None else layer.filters.sum() + layer.mask
                freqs.append(f.reshape(1))
                targets.append(torch.full_like(f.reshape(1), layer.nyquist))
        return torch.cat(freqs), torch.cat(targets)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        freqs, targets = self.terms(model)
        return self.factor * _penalty(freqs - targets, self.penalty)

    def __repr__(self) -> str:
        return (f"AntiAliasing(factor={self.factor}, target={self.target!r}, method={self.method!r}, "
                f"penalty={self.penalty!r}, gauss_stddevs={self.gauss_stddevs}, res={self.res}, "
                f"per_unit={self.per_unit})")


def frequency_summaries(model: nn.Module, gauss_stddevs: float = 1.0, per_unit: bool = True) -> Dict[str, float]:
    """Scalars for logging (the original's ``get_gabornet_summaries``, default s = 1).

    Per layer: the summed filter frequencies for ``sines``, ``gausses`` and ``gabor``
    (``{part}_freq/{layer}``) and the mask term (``mask_freq/{layer}``); plus means over layers.
    """
    stats: Dict[str, float] = {}
    with torch.no_grad():
        for target in ("sines", "gausses", "gabor"):
            layers = layer_frequencies(model, target, gauss_stddevs, per_unit, nyquist=False)
            values = [float(layer.filters.sum()) for layer in layers]
            for layer, value in zip(layers, values):
                stats[f"{target}_freq/{layer.name}"] = value
            stats[f"{target}_freq_mean"] = sum(values) / len(values)
        masks = []
        for name, conv, _ in _kernel_net_convs(model):
            inverse = _mask_inverse_widths(conv)
            if inverse is not None:
                masks.append(float(gaussian_frequency(inverse.max(), gauss_stddevs)))
                stats[f"mask_freq/{name}"] = masks[-1]
        if masks:
            stats["mask_freq_mean"] = sum(masks) / len(masks)
    return stats

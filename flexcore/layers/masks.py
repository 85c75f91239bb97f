"""Kernel masks: the learnable windows that give FlexConv its differentiable kernel size.

A mask maps a position grid ``(1, D, *grid)`` to values ``(1, 1, *grid)`` and reports its
support above a threshold, ``bounds() -> (D, 2)`` of ``(lower, upper)`` positions, from
which the convolution crops the grid (dynamic cropping, no gradient). Parameters are
``mean`` and ``sigma``/``width``, one entry per spatial dim (dim ``d`` of the mask acts on
grid channel ``d``, i.e. spatial dim ``d``: row 0 = height in 2-D).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from flexcore.layers.functional import crop_slices
from flexcore.registry import MASKS

__all__ = ["Mask", "GaussianMask", "SigmoidMask", "HannMask", "NoMask"]


class Mask(nn.Module):
    """Base class: per-dim separable windows over a position grid.

    Args:
        dim: number of spatial dims (1, 2 or 3).
        causal: 1-D causal layer: the window starts on the most recent step (position +1)
            and only the past side is ever cropped.
        threshold: crop where the mask falls below this value.
    """

    def __init__(self, dim: int, causal: bool = False, threshold: float = 0.1):
        super().__init__()
        if dim not in (1, 2, 3):
            raise ValueError(f"{type(self).__name__}: dim must be 1, 2 or 3, got {dim}")
        if causal and dim != 1:
            raise ValueError(f"{type(self).__name__}: causal masks are 1-D only, got dim={dim}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"{type(self).__name__}: threshold must lie in (0, 1), got {threshold}")
        self.dim = dim
        self.causal = causal
        self.register_buffer("threshold", torch.tensor([float(threshold)]))

    def window(self, coords: Tensor, d: int) -> Tensor:
        """Mask factor of dim ``d`` at positions ``coords`` (any shape)."""
        raise NotImplementedError

    def forward(self, positions: Tensor) -> Tensor:
        """Mask values ``(1, 1, *grid)`` for positions ``(1, D, *grid)``: product of per-dim factors."""
        if positions.dim() != self.dim + 2 or positions.shape[:2] != (1, self.dim):
            raise ValueError(
                f"{type(self).__name__}(dim={self.dim}): expected positions of shape (1, {self.dim}, *grid), "
                f"got {tuple(positions.shape)}"
            )
        # Each factor on the full grid channel, multiplied in dim order (the original's order).
        mask = self.window(positions[0, 0], 0)
        for d in range(1, self.dim):
            mask = mask * self.window(positions[0, d], d)
        return mask.view(1, 1, *positions.shape[2:])

    def bounds(self) -> Optional[Tensor]:
        """``(D, 2)`` positions ``(lower, upper)`` outside which the mask is below threshold; None = no crop."""
        return None

    def crop_bounds(self, positions: Tensor) -> Tuple[slice, ...]:
        """Per-dim slices of the grid ``positions`` (``(1, D, *grid)``) to keep at the threshold."""
        coords = [_axis(positions, d).detach().cpu() for d in range(self.dim)]
        bounds = self.bounds()
        if bounds is None:
            return tuple(slice(0, c.shape[0]) for c in coords)
        return crop_slices(coords, bounds.detach().cpu(), self.causal)

    def spatial_init_value(self) -> Optional[float]:
        """Spread the kernel net's Gaussian centres should start with (None: leave it alone)."""
        return None

    def describe(self) -> Dict[str, Tensor]:
        """The mask's state per dim, as detached ``(D,)`` tensors where the parameters live.

        Keys: ``mean`` and the width parameter under its own name (``sigma`` or ``width``,
        absolute value: its sign is irrelevant) where the mask has them, and the support
        ``lower`` / ``upper`` at the threshold where it crops. Nothing is copied to the host,
        so callers can fetch many layers' values with one copy (``torch.cat(...).cpu()``).
        """
        out: Dict[str, Tensor] = {}
        for name in ("mean", "sigma", "width"):
            value = getattr(self, name, None)
            if isinstance(value, Tensor):
                out[name] = value.detach() if name == "mean" else value.detach().abs()
        bounds = self.bounds()
        if bounds is not None:
            out["lower"], out["upper"] = bounds[:, 0].detach(), bounds[:, 1].detach()
        return out


def _axis(positions: Tensor, d: int) -> Tensor:
    """1-D coordinates of grid channel ``d`` along spatial dim ``d``."""
    index = [0] * (positions.dim() - 2)
    index[d] = slice(None)
    return positions[(0, d, *index)]


def _init_means(dim: int, causal: bool) -> Tensor:
    # Causal windows start on "now" (+1), centred ones on the centre.
    return torch.full((dim,), 1.0 if causal else 0.0)


@MASKS.register()
class GaussianMask(Mask):
    """FlexConv's mask: separable Gaussian ``exp(-1/2 ((p - mean) / sigma)^2)``, learnable mean and sigma per dim.

    Evaluated in the original's float32 order: ``(1/sigma) * (p - mean)``, squared, times
    ``-1/2``, exp. No normalisation; the sign of sigma is irrelevant. Support at threshold
    ``t``: ``mean +- |sigma| sqrt(-2 ln t)``.

    Args:
        dim: spatial dims.
        causal: 1-D causal (initial mean 1.0, the most recent step).
        init_value: initial sigma (0.075 in every experiment of the paper).
        threshold: dynamic-cropping threshold (0.1).
        temperature: kept as a buffer for checkpoint compatibility with the original (unused).
    """

    def __init__(
        self,
        dim: int,
        causal: bool = False,
        init_value: float = 0.075,
        threshold: float = 0.1,
        temperature: float = 15.0,
    ):
        super().__init__(dim, causal, threshold)
        if not init_value > 0:
            raise ValueError(f"GaussianMask: init_value (initial sigma) must be > 0, got {init_value}")
        self.init_value = float(init_value)
        self.mean = nn.Parameter(_init_means(dim, causal))
        self.sigma = nn.Parameter(torch.full((dim,), float(init_value)))
        self.register_buffer("temperature", torch.tensor([float(temperature)]))

    def window(self, coords: Tensor, d: int) -> Tensor:
        return torch.exp(-0.5 * ((1.0 / self.sigma[d]) * (coords - self.mean[d])) ** 2)

    def bounds(self) -> Tensor:
        with torch.no_grad():
            reach = self.sigma.abs() * torch.sqrt(-2.0 * torch.log(self.threshold))
            return torch.stack([self.mean - reach, self.mean + reach], dim=1)

    def spatial_init_value(self) -> float:
        # The original starts MAGNet's Gaussian centres inside the initial mask: 1.667 * sigma.
        return 1.667 * self.init_value

    def inverse_widths(self) -> Tensor:
        """``(D,)`` ``1/|sigma_d|``, differentiable (the anti-aliasing regulariser's mask term)."""
        return 1.0 / self.sigma.abs()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, causal={self.causal}, init_value={self.init_value}"


@MASKS.register()
class SigmoidMask(Mask):
    """Smooth box: ``sigmoid(T (p - mean + width)) * sigmoid(-T (p - mean - width))`` per dim.

    ``width`` is the half-width of the box and ``T`` its edge sharpness (a fixed buffer,
    ``temperature``). Causal 1-D masks keep only the lower edge, ``sigmoid(T (p - mean + width))``
    with ``mean`` starting at +1, so the present is never attenuated by an upper edge. This is
    the successor CCNN work's sigmoid mask made two-sided and learnable in mean and width.
    Support at threshold ``t``: each factor must reach ``t``, so
    ``mean +- (width + ln(1/t - 1) / T)`` (exact for the causal mask, a safe bound for the box).

    Args:
        dim: spatial dims.
        causal: 1-D causal.
        init_value: initial half-width (0.16: about the Gaussian mask's initial support).
        temperature: edge sharpness ``T`` in 1/position units.
        threshold: dynamic-cropping threshold.
    """

    def __init__(
        self,
        dim: int,
        causal: bool = False,
        init_value: float = 0.16,
        temperature: float = 15.0,
        threshold: float = 0.1,
    ):
        super().__init__(dim, causal, threshold)
        if not init_value > 0 or not temperature > 0:
            raise ValueError(f"SigmoidMask: init_value and temperature must be > 0, got {init_value}, {temperature}")
        self.init_value = float(init_value)
        self.mean = nn.Parameter(_init_means(dim, causal))
        self.width = nn.Parameter(torch.full((dim,), float(init_value)))
        self.register_buffer("temperature", torch.tensor([float(temperature)]))

    def window(self, coords: Tensor, d: int) -> Tensor:
        offset = coords - self.mean[d]
        lower = torch.sigmoid(self.temperature * (offset + self.width[d]))
        if self.causal:
            return lower
        return lower * torch.sigmoid(-self.temperature * (offset - self.width[d]))

    def bounds(self) -> Tensor:
        with torch.no_grad():
            reach = self.width.abs() + torch.log(1.0 / self.threshold - 1.0) / self.temperature
            upper = torch.full_like(self.mean, math.inf) if self.causal else self.mean + reach
            return torch.stack([self.mean - reach, upper], dim=1)

    def spatial_init_value(self) -> float:
        return self.init_value

    def extra_repr(self) -> str:
        return f"dim={self.dim}, causal={self.causal}, init_value={self.init_value}"


@MASKS.register()
class HannMask(Mask):
    """Hann (raised-cosine) window ``cos^2(pi (p - mean) / (2 width))`` on ``|p - mean| < width``, else 0.

    Compactly supported, so the crop is exact: at threshold ``t`` the support is
    ``mean +- width * (2/pi) arccos(sqrt(t))``. The successor CCNN work uses a Hann mask; this is
    its standard form with a learnable centre and half-width per dim.

    Args:
        dim: spatial dims.
        causal: 1-D causal (centre starts at +1).
        init_value: initial half-width (0.2: same initial crop as the default Gaussian).
        threshold: dynamic-cropping threshold.
    """

    def __init__(self, dim: int, causal: bool = False, init_value: float = 0.2, threshold: float = 0.1):
        super().__init__(dim, causal, threshold)
        if not init_value > 0:
            raise ValueError(f"HannMask: init_value (half-width) must be > 0, got {init_value}")
        self.init_value = float(init_value)
        self.mean = nn.Parameter(_init_means(dim, causal))
        self.width = nn.Parameter(torch.full((dim,), float(init_value)))

    def window(self, coords: Tensor, d: int) -> Tensor:
        phase = (coords - self.mean[d]) / self.width[d].abs()
        inside = (phase.abs() < 1.0).to(coords.dtype)
        return torch.cos(0.5 * math.pi * phase) ** 2 * inside

    def bounds(self) -> Tensor:
        with torch.no_grad():
            reach = self.width.abs() * (2.0 / math.pi) * torch.arccos(torch.sqrt(self.threshold))
            return torch.stack([self.mean - reach, self.mean + reach], dim=1)

    def spatial_init_value(self) -> float:
        return self.init_value

    def extra_repr(self) -> str:
        return f"dim={self.dim}, causal={self.causal}, init_value={self.init_value}"


@MASKS.register()
class NoMask(Mask):
    """All ones, never crops (the original's ``mask.use=False``). No parameters."""

    def __init__(self, dim: int, causal: bool = False, threshold: float = 0.1):
        super().__init__(dim, causal, threshold)

    def window(self, coords: Tensor, d: int) -> Tensor:
        return torch.ones_like(coords)

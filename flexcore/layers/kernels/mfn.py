"""Multiplicative filter networks (Fathony et al. 2021): FourierNet and GaborNet kernel nets.

An MFN multiplies a running feature map by a fresh filter of the input at every layer:
``h_0 = g_0(x)``, ``h_l = g_l(x) ⊙ (W_l h_{l-1} + b_l)``, output ``W_out h_L + b_out``.
All ``L + 1`` filters are evaluated in one batched pass (their parameters concatenated),
which is what makes kernel generation cheap; the per-filter modules keep the original's
parameter names and RNG order.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from flexcore.registry import KERNEL_NETS

from .base import (
    KernelNet,
    PointwiseLinear,
    check_int,
    check_positive_float,
    clamp_spatial_value,
    init_bias_,
    parse_bias_init,
)

__all__ = ["MFNBase", "FourierNet", "GaborNet", "FourierFilter", "GaborFilter", "gaussian_window"]


def gaussian_window(x: torch.Tensor, mu: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``exp(-½ Σ_d (γ_{h,d} (x_d − μ_{h,d}))²)``.

    Args:
        x: positions ``(D, N)``.
        mu: centres ``(F, D)``.
        gamma: inverse widths ``(F, D)`` (anisotropic) or ``(F, 1)`` (isotropic).

    Returns:
        ``(F, N)``.
    """
    diff = x.unsqueeze(0) - mu.unsqueeze(-1)
    return torch.exp(-0.5 * (gamma.unsqueeze(-1) * diff).square().sum(1))


class FourierFilter(nn.Module):
    """Sine filter ``sin(W x + b)``: W default-init times ``scale``, b ~ U(-π, π).

    Args:
        dim: input dims D.
        hidden_channels: H.
        scale: ``input_scale / sqrt(L + 1)``.
    """

    def __init__(self, dim: int, hidden_channels: int, scale: float) -> None:
        super().__init__()
        self.linear = PointwiseLinear(dim, hidden_channels, bias=True)  # always a phase
        with torch.no_grad():
            self.linear.weight.mul_(scale)
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.linear(x))


class GaborFilter(nn.Module):
    """Gabor filter ``exp(-½ Σ_d (γ (x_d − μ_d))²) · sin(W x + b)``.

    RNG order (the original's): W and b default draws, μ = value·U(-1, 1), γ ~ Gamma(α, β)
    of shape ``(H, D)`` (anisotropic) or ``(H, 1)``, then ``W *= scale·γ`` and b ~ U(-π, π).

    Args:
        dim: input dims D.
        hidden_channels: H.
        scale: ``input_scale / sqrt(L + 1)``.
        alpha: Gamma concentration of γ.
        beta: Gamma rate of γ.
        init_spatial_value: μ starts in ``[-value, value]^D``.
        anisotropic: one γ per dim (MAGNet) instead of one per channel (GaborNet).
    """

    def __init__(
        self,
        dim: int,
        hidden_channels: int,
        scale: float,
        alpha: float,
        beta: float,
        init_spatial_value: float,
        anisotropic: bool,
    ) -> None:
        super().__init__()
        self.linear = PointwiseLinear(dim, hidden_channels, bias=True)
        unit = 2 * torch.rand(hidden_channels, dim) - 1
        self.init_spatial_value = init_spatial_value
        self.mu = nn.Parameter(init_spatial_value * unit)
        # The unit draw, so set_spatial_init reproduces construction with another value bit
        # for bit. A plain attribute, not a buffer: no DDP broadcast, not in named_buffers().
        self._mu_unit = unit
        shape = (hidden_channels, dim if anisotropic else 1)
        self.gamma = nn.Parameter(torch.distributions.Gamma(alpha, beta).sample(shape))
        with torch.no_grad():
            self.linear.weight.mul_(scale * self.gamma)
            self.linear.bias.uniform_(-math.pi, math.pi)

    def set_spatial_init(self, value: float) -> None:
        """Re-spread the initial μ over ``[-value, value]^D`` (exactly as if built with ``value``)."""
        value = clamp_spatial_value(type(self).__name__, value)
        unit = self._mu_unit  # computed where it was drawn, then cast: exact on any device/dtype
        with torch.no_grad():
            if not torch.equal(self.mu, (self.init_spatial_value * unit).to(self.mu)):
                raise RuntimeError(
                    "set_spatial_init only applies to a freshly built kernel net: the Gaussian "
                    "centres mu changed since construction (trained or loaded weights)."
                )
            self.mu.copy_((value * unit).to(self.mu))
        self.init_spatial_value = value

    def window(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_window(x, self.mu, self.gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.window(x) * torch.sin(self.linear(x))


class MFNBase(KernelNet):
    """Multiplicative filter network; subclasses create ``self.filters`` (L + 1 of them).

    Init: hidden linears ``W ~ U(±sqrt(weight_scale/H))`` with ``bias_init`` (None keeps the
    default draw), output linear default (``bias_init`` applies to its bias too).
    RNG order: hidden linears, output linear, hidden re-init, then the filters.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 3,
        bias: bool = True,
        bias_init: Optional[str] = None,
        weight_scale: float = 1.0,
    ) -> None:
        super().__init__(dim, out_channels)
        owner = type(self).__name__
        self.hidden_channels = check_int(owner, "hidden_channels", hidden_channels)
        self.num_layers = check_int(owner, "num_layers", num_layers)
        self.bias_init = parse_bias_init(owner, bias_init)
        weight_scale = check_positive_float(owner, "weight_scale", weight_scale)

        self.linear = nn.ModuleList(
            PointwiseLinear(hidden_channels, hidden_channels, bias=bias) for _ in range(num_layers)
        )
        self.output_linear = PointwiseLinear(hidden_channels, out_channels, bias=bias)
        bound = math.sqrt(weight_scale / hidden_channels)
        with torch.no_grad():
            for lin in self.linear:
                lin.weight.uniform_(-bound, bound)
                init_bias_(lin.bias, self.bias_init)
            init_bias_(self.output_linear.bias, self.bias_init)
        self.filters = nn.ModuleList()

    def filter_bank(self, x: torch.Tensor) -> torch.Tensor:
        """All filters at once: ``(D, N)`` positions to ``(L + 1, H, N)``."""
        return torch.stack([f(x) for f in self.filters])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        g = self.filter_bank(x)
        out = g[0]
        for i, lin in enumerate(self.linear):
            out = g[i + 1] * lin(out)
        return self.output_linear(out)

    def frequency_terms(self) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Per filter ``(W, gamma)``: sine frequencies ``(H, D)`` in radians per unit (they
        already include the ``input_scale·γ`` init factor) and Gaussian inverse widths
        ``(H, D)``/``(H, 1)``, or None for pure sine filters."""
        return [(f.linear.weight, getattr(f, "gamma", None)) for f in self.filters]

    def _cat(self, name: str) -> torch.Tensor:
        return torch.cat([getattr(f, name) for f in self.filters])

    def _cat_linear(self) -> Tuple[torch.Tensor, torch.Tensor]:
        weight = torch.cat([f.linear.weight for f in self.filters])
        bias = torch.cat([f.linear.bias for f in self.filters])
        return weight, bias

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hidden_channels={self.hidden_channels}, "
            f"num_layers={self.num_layers}, bias_init={self.bias_init}"
        )


@KERNEL_NETS.register(aliases=("Fourier",))
class FourierNet(MFNBase):
    """MFN with sine filters ``sin(W x + b)`` (the original's ``Fourier`` kernel).

    Filter W: default init times ``input_scale / sqrt(L + 1)``; b ~ U(-π, π).
    The original CKConv never forwards ``kernel.input_scale`` to this net, so every published
    Fourier run used the class default 256; that is this argument's default too (set it to
    change the bandwidth; experiments' gin files leave it alone for parity).

    Args:
        dim: spatial dims of the positions.
        out_channels: output channels.
        hidden_channels: width H.
        num_layers: number of hidden linears L (there are L + 1 filters).
        input_scale: bandwidth of the filters' frequencies.
        bias: biases in the hidden and output linears (filters always have a phase).
        bias_init: None, ``"zero"`` or ``"uniform"`` for those biases.
        weight_scale: hidden weights ~ U(±sqrt(weight_scale / H)).
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 3,
        input_scale: float = 256.0,
        bias: bool = True,
        bias_init: Optional[str] = None,
        weight_scale: float = 1.0,
    ) -> None:
        super().__init__(dim, out_channels, hidden_channels, num_layers, bias, bias_init, weight_scale)
        self.input_scale = check_positive_float(type(self).__name__, "input_scale", input_scale)
        scale = input_scale / math.sqrt(num_layers + 1)
        self.filters = nn.ModuleList(FourierFilter(dim, hidden_channels, scale) for _ in range(num_layers + 1))

    def filter_bank(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._cat_linear()
        out = torch.sin(torch.addmm(bias.unsqueeze(1), weight, x))
        return out.view(len(self.filters), self.hidden_channels, -1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_scale={self.input_scale}"


@KERNEL_NETS.register(aliases=("Gabor",))
class GaborNet(MFNBase):
    """MFN with isotropic Gabor filters (the original's ``Gabor`` kernel).

    Filter ``l``: ``exp(-½ Σ_d (γ_h (x_d − μ_{h,d}))²) · sin(W x + b)`` with μ ~ value·U(-1, 1),
    γ ``(H, 1)`` ~ Gamma(α/(L+1), β) (the same concentration for every filter), W default-init
    times ``input_scale/sqrt(L+1)·γ``, b ~ U(-π, π).

    Args:
        dim: spatial dims of the positions.
        out_channels: output channels.
        hidden_channels: width H.
        num_layers: number of hidden linears L (L + 1 filters).
        input_scale: bandwidth of the sines; 25.6 as the paper's convolutions (kernel fitting
            binds the original class's 256 in its gin files).
        init_spatial_value: μ starts in ``[-value, value]^D`` (clamped to <= 1).
        bias: biases in the hidden and output linears (filters always have a phase).
        bias_init: None, ``"zero"`` or ``"uniform"`` for those biases.
        weight_scale: hidden weights ~ U(±sqrt(weight_scale / H)).
        alpha: base Gamma concentration α.
        beta: Gamma rate β.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 3,
        input_scale: float = 25.6,
        init_spatial_value: float = 1.0,
        bias: bool = True,
        bias_init: Optional[str] = None,
        weight_scale: float = 1.0,
        alpha: float = 6.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__(dim, out_channels, hidden_channels, num_layers, bias, bias_init, weight_scale)
        owner = type(self).__name__
        self.input_scale = check_positive_float(owner, "input_scale", input_scale)
        self.init_spatial_value = clamp_spatial_value(owner, init_spatial_value)
        alpha = check_positive_float(owner, "alpha", alpha)
        beta = check_positive_float(owner, "beta", beta)
        scale = input_scale / math.sqrt(num_layers + 1)
        self.filters = nn.ModuleList(
            self._make_filter(scale, alpha, beta, layer) for layer in range(num_layers + 1)
        )

    def _make_filter(self, scale: float, alpha: float, beta: float, layer: int) -> nn.Module:
        # Isotropic, and the same concentration α/(L+1) for every filter (the original's).
        concentration = alpha / (self.num_layers + 1)
        return GaborFilter(self.dim, self.hidden_channels, scale, concentration, beta, self.init_spatial_value, False)

    def set_spatial_init(self, value: float) -> None:
        """Re-spread every filter's initial μ over ``[-value, value]^D`` (FlexConv passes
        ``1.667 ×`` its mask's initial width). Bit-identical to building with that value."""
        for f in self.filters:
            f.set_spatial_init(value)
        self.init_spatial_value = self.filters[0].init_spatial_value

    def window_bank(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian windows of all filters: ``(D, N)`` to ``((L + 1)·H, N)``."""
        return gaussian_window(x, self._cat("mu"), self._cat("gamma"))

    def filter_bank(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._cat_linear()
        out = self.window_bank(x) * torch.sin(torch.addmm(bias.unsqueeze(1), weight, x))
        return out.view(len(self.filters), self.hidden_channels, -1)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, input_scale={self.input_scale}, "
            f"init_spatial_value={self.init_spatial_value}"
        )

"""MAGNet: the Multiplicative Anisotropic Gabor Network, FlexConv's default kernel net."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from flexcore.registry import KERNEL_NETS

from .mfn import GaborFilter, GaborNet

__all__ = ["MAGNet", "MAGNetFilter", "rotated_gaussian_window"]


def rotated_gaussian_window(
    x: torch.Tensor, mu: torch.Tensor, gamma: torch.Tensor, theta: torch.Tensor
) -> torch.Tensor:
    """``exp(-½ ‖γ ⊙ R(2πθ)(x − μ)‖²)`` with ``R(a) = [[cos a, sin a], [−sin a, cos a]]`` (2D).

    Args:
        x: positions ``(2, N)``.
        mu: centres ``(F, 2)``.
        gamma: inverse widths ``(F, 2)``.
        theta: orientations ``(F,)`` in turns.

    Returns:
        ``(F, N)``.
    """
    angle = 2 * math.pi * theta
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([cos, sin, -sin, cos], dim=-1).view(-1, 2, 2)
    rotated = torch.bmm(rotation, x.unsqueeze(0) - mu.unsqueeze(-1))
    return torch.exp(-0.5 * (gamma.unsqueeze(-1) * rotated).square().sum(1))


class MAGNetFilter(GaborFilter):
    """Anisotropic Gabor filter, optionally steerable (a learned orientation θ per channel, 2D).

    RNG order: as :class:`GaborFilter` (γ of shape ``(H, D)``), then θ ~ U(0, 1) if steerable.
    """

    def __init__(
        self,
        dim: int,
        hidden_channels: int,
        scale: float,
        alpha: float,
        beta: float,
        init_spatial_value: float,
        steerable: bool = False,
    ) -> None:
        super().__init__(dim, hidden_channels, scale, alpha, beta, init_spatial_value, anisotropic=True)
        self.steerable = steerable
        if steerable:
            self.theta = nn.Parameter(torch.rand(hidden_channels))

    def window(self, x: torch.Tensor) -> torch.Tensor:
        if self.steerable:
            return rotated_gaussian_window(x, self.mu, self.gamma, self.theta)
        return super().window(x)


@KERNEL_NETS.register()
class MAGNet(GaborNet):
    """Multiplicative Anisotropic Gabor Network (FlexConv's default kernel net).

    Filter ``l = 0..L``: ``exp(-½ Σ_d (γ_{l,h,d} (x_d − μ_{l,h,d}))²) · sin(W_l x + b_l)`` with
    μ ~ value·U(-1, 1), γ ``(H, D)`` ~ Gamma(α/(l+1), β) (concentrations 6, 3, 2, 1.5 for L=3),
    W default-init times ``input_scale/sqrt(L+1)·γ``, b ~ U(-π, π). Seeded like the original,
    construction reproduces its initial parameters bit for bit.

    Args:
        dim: spatial dims of the positions.
        out_channels: output channels.
        hidden_channels: width H.
        num_layers: number of hidden linears L (L + 1 filters).
        input_scale: bandwidth of the sines; 25.6 as the paper's FlexConv (the original class's
            standalone 256 is what kernel fitting uses, bound in its gin files).
        init_spatial_value: μ starts in ``[-value, value]^D`` (clamped to <= 1). FlexConv
            re-spreads it to ``1.667 ×`` its mask width through :meth:`set_spatial_init`.
        steerable: learn an orientation per channel (2D only).
        bias: biases in the hidden and output linears (filters always have a phase).
        bias_init: None, ``"zero"`` or ``"uniform"`` for those biases.
        weight_scale: hidden weights ~ U(±sqrt(weight_scale / H)).
        alpha: base Gamma concentration α (filter ``l`` uses α/(l+1)).
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
        steerable: bool = False,
        bias: bool = True,
        bias_init: Optional[str] = None,
        weight_scale: float = 1.0,
        alpha: float = 6.0,
        beta: float = 1.0,
    ) -> None:
        if steerable and dim != 2:
            raise ValueError(f"MAGNet: `steerable=True` needs dim=2 (rotations are 2D), got dim={dim}.")
        self.steerable = steerable
        super().__init__(
            dim, out_channels, hidden_channels, num_layers, input_scale, init_spatial_value,
            bias, bias_init, weight_scale, alpha, beta,
        )

    def _make_filter(self, scale: float, alpha: float, beta: float, layer: int) -> nn.Module:
        # The concentration falls with depth, α/(l+1), instead of GaborNet's fixed α/(L+1).
        concentration = alpha / (layer + 1)
        return MAGNetFilter(
            self.dim, self.hidden_channels, scale, concentration, beta, self.init_spatial_value, self.steerable
        )

    def window_bank(self, x: torch.Tensor) -> torch.Tensor:
        if not self.steerable:
            return super().window_bank(x)
        return rotated_gaussian_window(x, self._cat("mu"), self._cat("gamma"), self._cat("theta"))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, steerable={self.steerable}"

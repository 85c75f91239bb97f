"""RFFNet: random Fourier features of the positions followed by a small MLP head.

As the successor work to FlexConv (CCNN, Knigge et al. 2023) does: ``H/2`` Gaussian random
frequencies ``B ~ N(0, (2π·omega_0)²)`` per position dim, features ``[cos(B x), sin(B x)]``,
then ``num_layers`` pointwise linear maps with an activation between them. The frequencies
are a buffer (fixed; the classic random-features kernel approximation) or a parameter.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.layers.kernels import KernelNet, PointwiseLinear
from flexcore.registry import KERNEL_NETS

__all__ = ["RFFNet"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}


@KERNEL_NETS.register()
class RFFNet(KernelNet):
    """Random Fourier features ``[cos(Bx), sin(Bx)]`` and an MLP head (CCNN's RFNet).

    With fixed frequencies, ``features(x)·features(y) / (H/2)`` estimates the Gaussian kernel
    ``exp(-½ (2π·omega_0)² ‖x − y‖²)``: ``omega_0`` sets the bandwidth in cycles per unit.

    Args:
        dim: spatial dims of the positions.
        out_channels: output channels.
        hidden_channels: number of features H (even) and width of the head.
        num_layers: linear maps in the head (1 = a linear read-out of the features).
        omega_0: standard deviation of the frequencies, in cycles per unit.
        learn_frequencies: train B (a parameter named ``frequencies``) instead of keeping it fixed.
        activation: ``"ReLU"``, ``"GELU"`` or ``"Swish"`` between head layers.
        bias: biases in the head.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 2,
        omega_0: float = 1.0,
        learn_frequencies: bool = False,
        activation: str = "ReLU",
        bias: bool = True,
    ) -> None:
        super().__init__(dim, out_channels)
        if not isinstance(hidden_channels, int) or hidden_channels < 2 or hidden_channels % 2:
            raise ValueError(f"RFFNet: `hidden_channels` must be an even integer >= 2, got {hidden_channels!r}.")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"RFFNet: `num_layers` must be an integer >= 1, got {num_layers!r}.")
        if not omega_0 > 0:
            raise ValueError(f"RFFNet: `omega_0` must be a positive number, got {omega_0!r}.")
        if str(activation).lower() not in _ACTIVATIONS:
            raise ValueError(f"RFFNet: unknown `activation` {activation!r}; choose one of ReLU, GELU, Swish.")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.omega_0 = float(omega_0)
        self.activation = activation
        self._act = _ACTIVATIONS[str(activation).lower()]

        frequencies = torch.randn(hidden_channels // 2, dim) * (2 * math.pi * omega_0)
        if learn_frequencies:
            self.frequencies = nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)  # saved: checkpoints reproduce the net
        self.hidden = nn.ModuleList(
            PointwiseLinear(hidden_channels, hidden_channels, bias=bias) for _ in range(num_layers - 1)
        )
        self.output_linear = PointwiseLinear(hidden_channels, out_channels, bias=bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(dim, N)`` positions to ``(H, N)`` features ``[cos(Bx); sin(Bx)]``."""
        phase = self.frequencies @ x
        return torch.cat([torch.cos(phase), torch.sin(phase)])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        for layer in self.hidden:
            h = self._act(layer(h))
        return self.output_linear(h)

    def frequency_terms(self) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """``[(B, None)]``: the feature frequencies in radians per unit, ``(H/2, dim)``."""
        return [(self.frequencies, None)]

    def extra_repr(self) -> str:
        learned = isinstance(self.frequencies, nn.Parameter)
        return (
            f"{super().extra_repr()}, hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
            f"omega_0={self.omega_0}, learn_frequencies={learned}, activation={self.activation}"
        )

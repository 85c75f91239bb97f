"""SIREN and nSIREN kernel nets: sine-activated MLPs (Sitzmann et al. 2020; CKConv)."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from flexcore.registry import KERNEL_NETS

from .base import KernelNet, PointwiseLinear, check_int, check_positive_float, init_bias_, parse_bias_init

__all__ = ["SIREN", "nSIREN", "SineLayer"]


class SineLayer(PointwiseLinear):
    """``sin(ω₀·(W x + b))`` (SIREN) or ``sin(ω₀·W x + b)`` (nSIREN) on ``(in, N)`` features.

    Args:
        in_features: input channels.
        out_features: output channels.
        omega_0: frequency factor ω₀; a ``(1,)`` buffer, or a parameter named ``omega_0``
            (the solver gives it its own learning rate) with ``learn_omega_0``.
        learn_omega_0: learn ω₀.
        bias: learn a bias.
        scale_bias: True: ω₀ also scales the bias (SIREN); False: it does not (nSIREN).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        omega_0: float,
        learn_omega_0: bool = False,
        bias: bool = True,
        scale_bias: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.scale_bias = scale_bias
        value = torch.full((1,), float(omega_0))
        if learn_omega_0:
            self.omega_0 = nn.Parameter(value)
        else:
            self.register_buffer("omega_0", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_bias or self.bias is None:
            return torch.sin(self.omega_0 * super().forward(x))
        return torch.sin(torch.addmm(self.bias.unsqueeze(1), self.omega_0 * self.weight, x))

    def extra_repr(self) -> str:
        kind = "omega_0 * (W x + b)" if self.scale_bias else "omega_0 * W x + b"
        return f"{super().extra_repr()}, sin({kind})"


class _SIRENBase(KernelNet):
    """``num_layers - 1`` sine layers, then a linear output layer."""

    _scale_bias = True

    def __init__(
        self,
        dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 3,
        omega_0: float = 30.0,
        learn_omega_0: bool = False,
        bias: bool = True,
        bias_init: Optional[str] = None,
        weight_norm: bool = False,
    ) -> None:
        super().__init__(dim, out_channels)
        owner = type(self).__name__
        self.hidden_channels = check_int(owner, "hidden_channels", hidden_channels)
        self.num_layers = check_int(owner, "num_layers", num_layers, minimum=2)
        self.omega_0 = check_positive_float(owner, "omega_0", omega_0)
        self.bias_init = parse_bias_init(owner, bias_init)

        widths = [dim] + [hidden_channels] * (num_layers - 1)
        # Construction = the original's first RNG pass: default draws, layer by layer.
        self.hidden = nn.ModuleList(
            SineLayer(widths[i], hidden_channels, omega_0, learn_omega_0, bias, self._scale_bias)
            for i in range(num_layers - 1)
        )
        self.output_linear = PointwiseLinear(hidden_channels, out_channels, bias=bias)

        # Second pass, same order: first layer U(±1/dim), later ones U(±sqrt(6/fan_in)/ω₀),
        # each followed by its bias init (None keeps the default draw).
        with torch.no_grad():
            for k, layer in enumerate([*self.hidden, self.output_linear]):
                fan_in = layer.in_features
                bound = 1 / fan_in if k == 0 else math.sqrt(6.0 / fan_in) / omega_0
                layer.weight.uniform_(-bound, bound)
                init_bias_(layer.bias, self.bias_init)
        if weight_norm:
            for layer in [*self.hidden, self.output_linear]:
                layer.apply_weight_norm()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.output_linear(x)

    def frequency_terms(self) -> List[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """``[(ω₀·W_first, None)]``: the first layer's frequencies in radians per unit, ``(H, dim)``.

        Deeper sine layers compose these, so this is the frequency content of the first
        layer only (a lower bound of the net's bandwidth).
        """
        first = self.hidden[0]
        return [(first.omega_0 * first.weight, None)]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hidden_channels={self.hidden_channels}, "
            f"num_layers={self.num_layers}, omega_0={self.omega_0}, bias_init={self.bias_init}"
        )


@KERNEL_NETS.register()
class SIREN(_SIRENBase):
    """SIREN kernel net: sine layers ``sin(ω₀·(W x + b))``, then a linear output (CKConv).

    Init as the original: default draws for every layer, then weights re-drawn in the same
    order, first layer U(±1/dim), later layers (output included) U(±sqrt(6/fan_in)/ω₀);
    ``bias_init`` None keeps the default bias draws, ``"zero"``/``"uniform"`` (U(-1, 1)) replace them.

    Args:
        dim: spatial dims of the positions.
        out_channels: output channels.
        hidden_channels: width H.
        num_layers: number of linear maps (>= 2): ``num_layers - 1`` sine layers + output.
        omega_0: ω₀ (30 in the paper's runs).
        learn_omega_0: learn ω₀ (one parameter ``omega_0`` per sine layer).
        bias: learn biases.
        bias_init: None, ``"zero"`` or ``"uniform"``.
        weight_norm: weight-normalise every linear map (output included).
    """

    _scale_bias = True


@KERNEL_NETS.register()
class nSIREN(_SIRENBase):  # noqa: N801 - the original's name
    """nSIREN kernel net: sine layers ``sin(ω₀·W x + b)`` (bias outside ω₀), then a linear output.

    Same arguments and init as :class:`SIREN`.
    """

    _scale_bias = False

"""MLP kernel net (CKConv's original generator): Linear → Norm → Activation, then a linear output."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.registry import KERNEL_NETS

from .base import KernelNet, PointwiseLinear, check_int

__all__ = ["MLP", "ChannelLayerNorm"]

_ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "leakyrelu": F.leaky_relu,  # slope 0.01, as torch.nn.LeakyReLU()
    "swish": F.silu,  # x * sigmoid(x)
}
_ACTIVATION_NAMES = {"relu": "ReLU", "leakyrelu": "LeakyReLU", "swish": "Swish"}
_NORM_NAMES = {"batchnorm": "BatchNorm", "layernorm": "LayerNorm", "": None, "none": None, "identity": None}


class ChannelLayerNorm(nn.Module):
    """The original's "LayerNorm": GroupNorm with one group over ``(C, N)``, per-channel affine.

    Args:
        num_channels: C.
        eps: 1e-12 as in the original.
    """

    def __init__(self, num_channels: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.unsqueeze(0), 1, self.weight, self.bias, self.eps).squeeze(0)


class _ChannelBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the grid positions of one ``(C, N)`` feature map (the batch of one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(0)).squeeze(0)


def _canonical(owner: str, kind: str, value: Optional[str], table: dict) -> Optional[str]:
    """Case/underscore-insensitive lookup of an activation or norm name."""
    key = "" if value is None else str(value).replace("_", "").replace(" ", "").lower()
    if key not in table:
        valid = sorted({v for v in table.values() if v is not None})
        if kind == "norm":
            valid.append(None)
        raise ValueError(f"{owner}: unknown `{kind}` {value!r}; choose one of {valid}.")
    return table[key]


@KERNEL_NETS.register()
class MLP(KernelNet):
    """MLP kernel net: ``num_layers`` linear maps with norm + activation between them (CKConv).

    Init as the original: PyTorch default weights (drawn layer by layer, weight then bias),
    then every bias set to 0. BatchNorm normalises over the grid positions in train mode and
    uses running statistics in eval mode, so the kernel depends on the module's mode.

    Args:
        dim: spatial dims of the positions.
        out_channels: output channels.
        hidden_channels: width H of the hidden layers.
        num_layers: number of linear maps (>= 2: first, ``num_layers - 2`` hidden, output).
        activation: ``"ReLU"``, ``"LeakyReLU"`` or ``"Swish"``.
        norm: ``"BatchNorm"``, ``"LayerNorm"`` (GroupNorm with one group, eps 1e-12) or None.
        bias: learn biases in every linear map.
        weight_norm: weight-normalise every linear map (output included).
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        hidden_channels: int = 32,
        num_layers: int = 3,
        activation: str = "ReLU",
        norm: Optional[str] = "BatchNorm",
        bias: bool = True,
        weight_norm: bool = False,
    ) -> None:
        super().__init__(dim, out_channels)
        owner = type(self).__name__
        self.hidden_channels = check_int(owner, "hidden_channels", hidden_channels)
        self.num_layers = check_int(owner, "num_layers", num_layers, minimum=2)
        self.activation = _canonical(owner, "activation", activation, _ACTIVATION_NAMES)
        self.norm = _canonical(owner, "norm", norm, _NORM_NAMES)
        self._act = _ACTIVATIONS[self.activation.lower()]

        widths = [dim] + [hidden_channels] * (num_layers - 1)
        # Construction order = RNG order of the original: first, hidden, output layer.
        self.hidden = nn.ModuleList(
            PointwiseLinear(widths[i], hidden_channels, bias=bias) for i in range(num_layers - 1)
        )
        self.output_linear = PointwiseLinear(hidden_channels, out_channels, bias=bias)
        if self.norm == "BatchNorm":
            self.norms = nn.ModuleList(_ChannelBatchNorm(hidden_channels) for _ in self.hidden)
        elif self.norm == "LayerNorm":
            self.norms = nn.ModuleList(ChannelLayerNorm(hidden_channels) for _ in self.hidden)
        else:
            self.norms = nn.ModuleList()

        with torch.no_grad():  # the original zeroes every bias after the default draws
            for layer in [*self.hidden, self.output_linear]:
                if layer.bias is not None:
                    layer.bias.zero_()
        if weight_norm:
            for layer in [*self.hidden, self.output_linear]:
                layer.apply_weight_norm()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if self.norms:
                x = self.norms[i](x)
            x = self._act(x)
        return self.output_linear(x)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hidden_channels={self.hidden_channels}, "
            f"num_layers={self.num_layers}, activation={self.activation}, norm={self.norm}"
        )

"""Shared parts of the kernel nets: the base class, pointwise linear maps, argument checks.

Kernel nets work on a flat ``(channels, N)`` feature matrix (``N`` = number of grid
positions): the positions ``(1, dim, *grid)`` are a free view of it, every layer is one
``addmm``, and the output ``(out_channels, N)`` is a free view of ``(1, out_channels,
*grid)``. The original computes the same maps as 1x1 ``ConvNd`` layers on ``[1, C, *grid]``.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch
import torch.nn as nn
from torch.nn import init

__all__ = [
    "KernelNet",
    "PointwiseLinear",
    "check_int",
    "check_positive_float",
    "parse_bias_init",
    "init_bias_",
    "clamp_spatial_value",
]

_NO_BIAS_INIT = (None, "", "none", "default")
logger = logging.getLogger(__name__)


def check_int(owner: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else a ValueError naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: `{name}` must be an integer >= {minimum}, got {value!r}.")
    return value


def check_positive_float(owner: str, name: str, value) -> float:
    """``value`` as a finite float ``> 0``, else a ValueError naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: `{name}` must be a positive number, got {value!r}.")
    return float(value)


def parse_bias_init(owner: str, value: Optional[str]) -> Optional[str]:
    """Normalise ``bias_init``: None (keep PyTorch's default draw), ``"zero"`` or ``"uniform"``.

    The original's YAML default is the *string* ``"None"``; it means the same as ``None``.
    """
    key = value.strip().lower() if isinstance(value, str) else value
    if key in _NO_BIAS_INIT:
        return None
    if key in ("zero", "zeros"):
        return "zero"
    if key == "uniform":
        return "uniform"
    raise ValueError(
        f"{owner}: unknown `bias_init` {value!r}; use None (PyTorch default), 'zero' or 'uniform'."
    )


def init_bias_(bias: Optional[torch.Tensor], bias_init: Optional[str]) -> None:
    """Apply ``bias_init`` in place: 0, U(-1, 1), or leave the default draw (None)."""
    if bias is None or bias_init is None:
        return
    with torch.no_grad():
        if bias_init == "zero":
            bias.fill_(0.0)
        else:
            bias.uniform_(-1.0, 1.0)


def clamp_spatial_value(owner: str, value) -> float:
    """``init_spatial_value`` clamped to <= 1 (grids live in [-1, 1]; CKConv clamps too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: `init_spatial_value` must be a number >= 0, got {value!r}.")
    if value > 1.0:
        logger.warning("%s: init_spatial_value %s > 1 clamped to 1.0 (positions lie in [-1, 1]).", owner, value)
        return 1.0
    return value


class PointwiseLinear(nn.Module):
    """Affine map applied at every grid position: ``(in_features, N) -> (out_features, N)``.

    Parameters and default init draws equal those of the original's 1x1 ``ConvNd``
    (and of ``nn.Linear``): weight ``(out, in)`` ~ U(±1/sqrt(in)) via kaiming_uniform(a=√5),
    then bias ``(out,)`` ~ U(±1/sqrt(in)). After :meth:`apply_weight_norm` the weight is
    ``g · v / ‖v‖`` per output row, stored as ``weight_g`` ``(out, 1)`` and ``weight_v``
    ``(out, in)`` like ``torch.nn.utils.weight_norm(dim=0)``; ``.weight`` stays readable.

    Args:
        in_features: input channels.
        out_features: output channels.
        bias: learn an additive bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's ConvNd/Linear default init, in its order: weight, then bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    @property
    def dtype(self) -> torch.dtype:
        params = self._parameters
        return (params["weight_v"] if "weight_v" in params else params["weight"]).dtype

    @property
    def weight_normed(self) -> bool:
        return "weight_v" in self._parameters

    def apply_weight_norm(self) -> None:
        """Re-parametrise the weight as ``g · v / ‖v‖`` (values unchanged up to rounding)."""
        if self.weight_normed:
            return
        weight = self._parameters.pop("weight").detach()
        self.weight_g = nn.Parameter(torch.norm_except_dim(weight, 2, 0))
        self.weight_v = nn.Parameter(weight.clone())

    def __getattr__(self, name: str):
        # With weight norm, `.weight` is computed from (g, v) on every access, so callers
        # (forward, frequency_terms, users) never see a stale copy.
        if name == "weight":
            params = self.__dict__.get("_parameters", {})
            if "weight_v" in params:
                return torch._weight_norm(params["weight_v"], params["weight_g"], 0)
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.mm(self.weight, x)
        return torch.addmm(self.bias.unsqueeze(1), self.weight, x)

    def extra_repr(self) -> str:
        wn = ", weight_norm=True" if self.weight_normed else ""
        return f"{self.in_features} -> {self.out_features}, bias={self.bias is not None}{wn}"


class KernelNet(nn.Module):
    """Base of the kernel nets: maps positions ``(1, dim, *grid)`` to ``(1, out_channels, *grid)``.

    Subclasses implement :meth:`forward_features` on the flat ``(dim, N)`` positions and
    return ``(out_channels, N)``; this class checks the input and does the (free) reshapes.

    Args:
        dim: number of spatial dimensions of the positions (1, 2 or 3).
        out_channels: output channels (a convolution asks for ``C_out * C_in``).
    """

    def __init__(self, dim: int, out_channels: int) -> None:
        super().__init__()
        owner = type(self).__name__
        self.dim = check_int(owner, "dim", dim)
        self.out_channels = check_int(owner, "out_channels", out_channels)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map flat positions ``(dim, N)`` to kernel values ``(out_channels, N)``."""
        raise NotImplementedError

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Kernel values at ``positions``.

        Args:
            positions: ``(1, dim, *grid)`` relative positions (values in [-1, 1]).

        Returns:
            ``(1, out_channels, *grid)``.
        """
        shape = positions.shape
        if positions.dim() != self.dim + 2 or shape[0] != 1 or shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__}(dim={self.dim}) expects relative positions of shape "
                f"(1, {self.dim}, *grid) with {self.dim} grid dim(s), got {tuple(shape)}."
            )
        x = positions.reshape(self.dim, -1)
        # The output layer's dtype decides, so a .double() net fed a float32 grid works.
        output_linear = getattr(self, "output_linear", None)
        if output_linear is not None and x.dtype != output_linear.dtype:
            x = x.to(output_linear.dtype)
        out = self.forward_features(x)
        return out.view(1, self.out_channels, *shape[2:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, out_channels={self.out_channels}"

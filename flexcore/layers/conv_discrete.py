"""Conv: a discrete ``nn.Conv*d`` behind the continuous convolutions' interface."""
from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from flexcore.layers.conv_base import ConvBase, make_baked_conv
from flexcore.registry import CONVS

__all__ = ["Conv"]


@CONVS.register()
class Conv(ConvBase):
    """A discrete ``nn.Conv*d`` behind the continuous convs' interface (the original's ``Conv``).

    Parameters ``weight`` ``(C_out, C_in, *k)`` and ``bias`` with PyTorch's default init (same
    random draws as ``nn.Conv*d``). Unlike the original's ``Conv`` it can be causal in 1-D
    and use the FFT path for large kernels.

    Args:
        kernel_size: int or per-dim ints.
        bias: learnable bias.
        other arguments: see ``ConvBase``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        causal: bool = False,
        kernel_size: Union[int, Sequence[int]] = 3,
        bias: bool = True,
        fft: Union[bool, str] = "auto",
        stride: Union[int, Sequence[int]] = 1,
        padding="same",
        groups: int = 1,
    ):
        super().__init__(in_channels, out_channels, dim, causal, stride, padding, fft)
        name = type(self).__name__
        ksize = (kernel_size,) * dim if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(ksize) != dim or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ksize):
            raise ValueError(f"{name}: kernel_size must be a positive int or {dim} positive ints, got {kernel_size!r}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels and out_channels")
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *ksize))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's ``_ConvNd`` init: Kaiming-uniform(a=sqrt 5) weight, then U(+-1/sqrt(fan_in)) bias."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def kernel_size(self) -> Tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    def generate_kernel(self) -> Tensor:
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.convolve(x, self.weight, self.bias, self.groups)

    def bake(self) -> nn.Module:
        ksize = self.kernel_size()
        pads = self.pads(ksize)
        fft = self.bake_fft(ksize, self.out_channels, self.groups)
        bias = None if self.bias is None else self.bias.detach().clone()
        return make_baked_conv(self.weight.detach().clone(), bias, self.stride, pads, self.groups, fft,
                               input_size=self.baked_input_size())

    def extra_repr(self) -> str:
        return self._conv_repr() + f", kernel_size={self.kernel_size()}"

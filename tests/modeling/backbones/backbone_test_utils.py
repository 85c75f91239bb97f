"""Plain ``nn.ConvNd`` conv factories honouring the CONVS contract, for backbone tests.

Not a conftest.py: tests elsewhere import their own ``conftest`` by name, which a second
conftest module would shadow. Test modules import the fixtures from here.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F


class PlainConv(nn.Module):
    """``nn.Conv{dim}d`` with "same" output size; causal (left padding) on request."""

    def __init__(self, in_channels: int, out_channels: int, dim: int, causal: bool = False,
                 kernel_size: int = 3, calls: list = None):
        super().__init__()
        self.causal = causal
        self.kernel_size = kernel_size
        padding = 0 if causal else "same"
        self.conv = getattr(nn, f"Conv{dim}d")(in_channels, out_channels, kernel_size, padding=padding)
        if calls is not None:
            calls.append((in_channels, out_channels, dim, causal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            x = F.pad(x, (self.kernel_size - 1, 0))
        return self.conv(x)


@pytest.fixture
def plain_conv():
    """Factory ``(in, out, dim, causal=False, **hp)`` of :class:`PlainConv` (kernel size 3)."""
    return PlainConv


@pytest.fixture
def recording_conv():
    """``(factory, calls)``: the factory appends ``(in, out, dim, causal)`` for each conv it builds."""
    calls = []
    return functools.partial(PlainConv, calls=calls), calls

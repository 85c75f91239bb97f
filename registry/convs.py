"""Convolution layers (CKConv, FlexConv, Conv, separable, SRF/N-Jet, ...)."""
import torch.nn as nn

from .core import Registry

CONVS = Registry(
    "convs",
    contract=(
        "factory(in_channels, out_channels, dim, causal=False, **hp) -> nn.Module: "
        "(B, in_channels, *spatial) -> (B, out_channels, *spatial)"
    ),
    base_type=nn.Module,
    builtins=["flexcore.layers"],
)

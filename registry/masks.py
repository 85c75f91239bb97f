"""Kernel masks (Gaussian FlexConv mask, sigmoid, Hann, none)."""
import torch.nn as nn

from .core import Registry

MASKS = Registry(
    "masks",
    contract=(
        "factory(dim, causal=False, **hp) -> nn.Module: mask values on a position grid "
        "(1, dim, *grid) -> (1, 1, *grid) and the crop extent for a threshold"
    ),
    base_type=nn.Module,
    builtins=["flexcore.layers"],
)

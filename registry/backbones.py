"""Whole networks (FlexNet/CKCNN, TCN, CIFAR ResNets, ...)."""
import torch.nn as nn

from .core import Registry

BACKBONES = Registry(
    "backbones",
    contract=(
        "factory(in_channels, out_channels, dim, conv=<conv factory>, **hp) -> nn.Module: "
        "(B, in_channels, *spatial) -> (B, out_channels) logits"
    ),
    base_type=nn.Module,
    builtins=["flexcore.modeling"],
)

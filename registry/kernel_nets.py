"""Continuous kernel generators (MLP, SIREN, MFN, MAGNet, ...)."""
import torch.nn as nn

from .core import Registry

KERNEL_NETS = Registry(
    "kernel_nets",
    contract=(
        "factory(dim, out_channels, **hp) -> nn.Module mapping relative positions "
        "(1, dim, *grid) to kernel values (1, out_channels, *grid)"
    ),
    base_type=nn.Module,
    builtins=["flexcore.layers"],
)

"""Helpers shared by the layer tests."""
import torch
import torch.nn as nn


class TinyKernelNet(nn.Module):
    """A small sine MLP honouring the kernel-net contract (dim, out_channels) -> (1, out, *grid)."""

    def __init__(self, dim: int, out_channels: int, hidden: int = 8):
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1]
        self.first = conv(dim, hidden, 1)
        self.out = conv(hidden, out_channels, 1)

    def forward(self, positions):
        return self.out(torch.sin(4.0 * self.first(positions)))

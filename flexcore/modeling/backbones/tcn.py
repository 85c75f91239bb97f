"""FlexTCN / CKTCN: residual blocks of causal continuous convolutions for sequences (the original's `models/cktcn.py`).

Names follow the original (``backbone.{i}.{cconv1,cconv2,norm1,norm2,shortcut.0}``,
``finallyr``) and so does the construction order (blocks in order, then the head).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from flexcore.registry import BACKBONES

from .common import build_conv, build_nonlinearity, build_norm, check_dim, expand_width_factors, linear_nd

__all__ = ["TCN", "FlexTCN", "CKTCN", "TCNBlock"]


class TCNBlock(nn.Module):
    """``y = act(drop(act(norm2(conv2(drop(act(norm1(conv1(x)))))))) + shortcut(x))`` (Bai et al.).

    Args:
        in_channels, out_channels: widths of ``x`` ``(B, in_channels, L)`` and ``y``.
        conv: conv factory, called with ``causal=True``.
        norm, nonlinearity, dropout: see :class:`TCN`.
    """

    # Each norm reads only its conv's output: bake_model may fold it into the conv.
    conv_norm_pairs = (("cconv1", "norm1"), ("cconv2", "norm2"))

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv: Callable[..., nn.Module],
        norm: str = "BatchNorm",
        nonlinearity: str = "ReLU",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.cconv1 = build_conv(conv, "TCN", in_channels, out_channels, 1, causal=True)
        self.cconv2 = build_conv(conv, "TCN", out_channels, out_channels, 1, causal=True)
        self.nonlinear = build_nonlinearity(nonlinearity)
        self.norm1 = build_norm(norm, out_channels, 1)
        self.norm2 = build_norm(norm, out_channels, 1)
        self.dp = nn.Dropout(dropout)
        shortcut = [linear_nd(in_channels, out_channels, 1)] if in_channels != out_channels else []
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dp(self.nonlinear(self.norm1(self.cconv1(x))))
        out = self.dp(self.nonlinear(self.norm2(self.cconv2(out))))
        return self.nonlinear(out + self.shortcut(x))


@BACKBONES.register()
class TCN(nn.Module):
    """Temporal convolutional network of causal (continuous) convolutions, no stem.

    Block 0 maps ``in_channels`` straight to the first width. The head is a linear layer on
    the last time step (``(B, out)``) or, with ``head='per_step'``, on every step
    (``(B, out, L)``, e.g. copy memory). Defaults are the original's testcase FlexTCN-2.

    Args:
        in_channels: input channels of ``x`` ``(B, in_channels, L)``.
        out_channels: logits (classes, or 1 for regression).
        dim: must be 1.
        conv: conv factory, called as ``conv(in, out, 1, causal=True)``.
        hidden_channels: base width ``C``.
        num_blocks: residual blocks.
        block_width_factors: flat ``(factor, count)`` pairs (see :class:`FlexNet`).
        norm: ``BatchNorm``, ``LayerNorm`` or ``none``.
        nonlinearity: ``ReLU`` or ``LeakyReLU``.
        dropout: dropout after both activations of every block.
        dropout_in: dropout on the input (the original applied it in its training loop).
        head: ``last`` or ``per_step``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 1,
        conv: Optional[Callable[..., nn.Module]] = None,
        hidden_channels: int = 30,
        num_blocks: int = 2,
        block_width_factors: Optional[Sequence[float]] = (0.0,),
        norm: str = "BatchNorm",
        nonlinearity: str = "ReLU",
        dropout: float = 0.1,
        dropout_in: float = 0.0,
        head: str = "last",
    ):
        super().__init__()
        check_dim("TCN", dim, (1,))
        if head not in ("last", "per_step"):
            raise ValueError(f"TCN: unknown head {head!r}; use 'last' or 'per_step'.")
        if conv is None:  # fail before building anything
            build_conv(None, "TCN", in_channels, hidden_channels, dim)
        factors = expand_width_factors(block_width_factors, num_blocks)
        self.head = head
        self.dropout_in = nn.Dropout(dropout_in)
        widths = [int(hidden_channels * f) for f in factors]
        blocks = []
        for i, width in enumerate(widths):
            block_in = in_channels if i == 0 else widths[i - 1]
            blocks.append(TCNBlock(block_in, width, conv, norm=norm, nonlinearity=nonlinearity, dropout=dropout))
        self.backbone = nn.Sequential(*blocks)
        self.widths = widths

        final = widths[-1] if widths else in_channels
        self.finallyr = nn.Linear(final, out_channels)
        # The original re-draws the weight after the default init: normal(0, 0.01), bias 0.
        nn.init.normal_(self.finallyr.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.finallyr.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, L) -> (B, C_final, L)``."""
        return self.backbone(self.dropout_in(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)``, or ``(B, out_channels, L)`` with ``head='per_step'``."""
        out = self.forward_features(x)
        if self.head == "last":
            return self.finallyr(out[:, :, -1])
        return self.finallyr(out.transpose(1, 2)).transpose(1, 2)


@BACKBONES.register()
class FlexTCN(TCN):
    """TCN under the paper's name for it with FlexConv layers (``conv=@FlexConv``)."""


@BACKBONES.register()
class CKTCN(TCN):
    """TCN under the original's name for it with CKConv layers (``conv=@CKConv``)."""

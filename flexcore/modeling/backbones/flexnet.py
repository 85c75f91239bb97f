"""FlexNet / CKCNN: the original's residual network of continuous convolutions (its `models/ckresnet.py`).

Module names and construction order follow the original (``cconv1``, ``norm1``,
``blocks.{i}.{cconv1,cconv2,norm1,norm2,shortcut.0}``, ``out_layer``), so a model seeded like
the original draws the same random numbers in the same order and original state dicts map
onto it key for key (only the keys inside a convolution are renamed, by
:mod:`flexcore.compat.original.weights`).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.registry import BACKBONES

from .common import build_conv, build_nonlinearity, build_norm, check_dim, expand_width_factors, linear_nd

__all__ = ["FlexNet", "CKCNN", "ResNetBlock", "HEADS"]

HEADS = ("auto", "pool", "last", "per_step")


class ResNetBlock(nn.Module):
    """``y = act(norm2(conv2(drop(act(norm1(conv1(x)))))) + shortcut(x))``.

    The shortcut is a pointwise conv with bias (no norm) when the width changes, else identity.

    Args:
        in_channels, out_channels: widths of ``x`` ``(B, in_channels, *spatial)`` and ``y``.
        dim: spatial dimensionality.
        conv: conv factory (``CONVS`` contract).
        norm, nonlinearity, dropout: see :class:`FlexNet`.
        causal: build causal convolutions (1D sequences).
    """

    # Each norm reads only its conv's output: bake_model may fold it into the conv.
    conv_norm_pairs = (("cconv1", "norm1"), ("cconv2", "norm2"))

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        conv: Callable[..., nn.Module],
        norm: str = "BatchNorm",
        nonlinearity: str = "ReLU",
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        # Creation order = the original's RNG order: conv1, conv2, (norms draw nothing), shortcut.
        self.cconv1 = build_conv(conv, type(self).__name__, in_channels, out_channels, dim, causal)
        self.cconv2 = build_conv(conv, type(self).__name__, out_channels, out_channels, dim, causal)
        self.nonlinear = build_nonlinearity(nonlinearity)
        self.norm1 = build_norm(norm, out_channels, dim)
        self.norm2 = build_norm(norm, out_channels, dim)
        self.dp = nn.Dropout(dropout)
        shortcut = [linear_nd(in_channels, out_channels, dim)] if in_channels != out_channels else []
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dp(self.nonlinear(self.norm1(self.cconv1(x))))
        return self.nonlinear(self.norm2(self.cconv2(out)) + self.shortcut(x))


@BACKBONES.register()
class FlexNet(nn.Module):
    """Residual network of continuous convolutions (FlexNet with FlexConv, CKCNN with CKConv).

    Stem ``conv -> norm -> act``, ``num_blocks`` :class:`ResNetBlock`s, then a head: global
    average pool and a pointwise linear for images/volumes, the last time step for sequences.
    Defaults give the paper's FlexNet-7 (hidden 24, widths 24,24,36,36,36,48,48, dropout 0.2).

    Args:
        in_channels: input channels of ``x`` ``(B, in_channels, *spatial)``.
        out_channels: logits per sample (classes).
        dim: spatial dims of the data (1, 2 or 3).
        conv: conv factory ``conv(in_channels, out_channels, dim, causal=False)``, e.g. ``@FlexConv``.
        hidden_channels: stem width ``C`` (the original's ``net.no_hidden``).
        num_blocks: residual blocks (FlexNet-N has N blocks, 2N+1 convolutions).
        block_width_factors: flat ``(factor, count)`` pairs; block i has width ``int(C * f_i)``.
            ``None``/``[0.0]``: every block has width ``C``.
        norm: ``BatchNorm``, ``LayerNorm`` (GroupNorm with one group) or ``none``.
        nonlinearity: ``ReLU`` or ``LeakyReLU``.
        dropout: dropout after each block's first activation.
        dropout_in: dropout on the input (the original applied it in its training loop).
        head: ``pool`` (global average, ``(B, out)``), ``last`` (last position, ``(B, out)``),
            ``per_step`` (every position, ``(B, out, *spatial)``), ``auto`` = ``last`` for
            ``dim=1`` else ``pool``.
        causal: causal convolutions; ``None`` = causal for ``dim=1`` (as the original's 1D layers).
    """

    conv_norm_pairs = (("cconv1", "norm1"),)  # the stem's norm reads only its conv (bake_model folds it)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        conv: Optional[Callable[..., nn.Module]] = None,
        hidden_channels: int = 24,
        num_blocks: int = 7,
        block_width_factors: Optional[Sequence[float]] = (1.0, 2, 1.5, 3, 2.0, 2),
        norm: str = "BatchNorm",
        nonlinearity: str = "ReLU",
        dropout: float = 0.2,
        dropout_in: float = 0.0,
        head: str = "auto",
        causal: Optional[bool] = None,
    ):
        super().__init__()
        name = type(self).__name__
        check_dim(name, dim, (1, 2, 3))
        if head not in HEADS:
            raise ValueError(f"{name}: unknown head {head!r}; use one of {HEADS}.")
        factors = expand_width_factors(block_width_factors, num_blocks)
        causal = (dim == 1) if causal is None else causal
        self.dim = dim
        self.head = ("last" if dim == 1 else "pool") if head == "auto" else head
        self.dropout_in = nn.Dropout(dropout_in)

        # Stem.
        self.cconv1 = build_conv(conv, name, in_channels, hidden_channels, dim, causal)
        self.norm1 = build_norm(norm, hidden_channels, dim)
        self.nonlinear = build_nonlinearity(nonlinearity)

        widths = [int(hidden_channels * f) for f in factors]
        blocks = []
        for i, width in enumerate(widths):
            block_in = hidden_channels if i == 0 else widths[i - 1]
            blocks.append(
                ResNetBlock(block_in, width, dim, conv, norm=norm, nonlinearity=nonlinearity,
                            dropout=dropout, causal=causal)
            )
        self.blocks = nn.Sequential(*blocks)
        self.widths = widths

        final = widths[-1] if widths else hidden_channels
        # Default draws first, then a fresh Kaiming-normal weight and zero bias (original order).
        self.out_layer = linear_nd(final, out_channels, dim)
        nn.init.kaiming_normal_(self.out_layer.weight)
        nn.init.zeros_(self.out_layer.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial) -> (B, C_final, *spatial)``, before the head."""
        out = self.nonlinear(self.norm1(self.cconv1(self.dropout_in(x))))
        return self.blocks(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)`` (``(B, out_channels, *spatial)`` with ``head='per_step'``)."""
        out = self.forward_features(x)
        if self.head == "pool":
            out = getattr(F, f"adaptive_avg_pool{self.dim}d")(out, (1,) * self.dim)
            return self.out_layer(out).flatten(1)
        if self.head == "last":
            last = out[(..., *[slice(-1, None)] * self.dim)]
            return self.out_layer(last).flatten(1)
        return self.out_layer(out)


@BACKBONES.register()
class CKCNN(FlexNet):
    """FlexNet under the original's other name (``CKCNN``, usually with ``conv=@CKConv``)."""

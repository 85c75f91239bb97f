"""He et al.'s CIFAR ResNets (20, 32, 44, 56, 110, 1202) with option-A shortcuts (a baseline of the FlexConv paper).

With the default ``conv=None`` every 3x3 convolution is the original's bias-free
``nn.Conv{dim}d`` and the parameter counts are the paper's (ResNet-44: 658,586). Any conv
factory can replace them (e.g. FlexConv): strided layers then run the conv at full
resolution and keep every ``stride``-th output, which for odd kernels with "same" padding
equals a strided convolution.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.registry import BACKBONES

from .common import build_conv, check_dim

__all__ = ["CIFARResNet", "BasicBlock", "CIFAR_RESNET_DEPTHS"]

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110, 1202)


def _subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    return x[(..., *[slice(None, None, stride)] * (x.dim() - 2))] if stride > 1 else x


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; option-A shortcut (subsample + zero-pad channels) when shapes change.

    Args:
        in_channels, out_channels: widths of ``x`` ``(B, in, *spatial)`` and the output.
        dim: spatial dims.
        stride: spatial subsampling of the first conv (1 or 2).
        conv: conv factory, or ``None`` for the original's bias-free 3x3 ``nn.Conv{dim}d``.
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, stride: int = 1,
                 conv: Optional[Callable[..., nn.Module]] = None):
        super().__init__()
        self.stride = stride
        self.pad = out_channels - in_channels
        self.reshape = stride != 1 or in_channels != out_channels
        if conv is None:
            conv_cls = getattr(nn, f"Conv{dim}d")
            self.conv1 = conv_cls(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
            self.conv2 = conv_cls(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
            self.subsample_after_conv = 1  # the conv strides itself
        else:
            self.conv1 = build_conv(conv, "CIFARResNet", in_channels, out_channels, dim)
            self.conv2 = build_conv(conv, "CIFARResNet", out_channels, out_channels, dim)
            self.subsample_after_conv = stride
        norm = getattr(nn, f"BatchNorm{dim}d")
        self.bn1 = norm(out_channels)
        self.bn2 = norm(out_channels)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reshape:
            return x
        # Option A: parameter-free; x[..., ::2, ::2] padded with pad/2 zero channels each side.
        x = x[(..., *[slice(None, None, 2)] * (x.dim() - 2))] if self.stride != 1 else x
        left = self.pad // 2
        return F.pad(x, (0, 0) * (x.dim() - 2) + (left, self.pad - left))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _subsample(self.conv1(x), self.subsample_after_conv)
        out = F.relu(self.bn1(out))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@BACKBONES.register()
class CIFARResNet(nn.Module):
    """CIFAR ResNet-``depth`` (``depth = 6n + 2``): stem, three stages of ``n`` blocks, linear head.

    Widths ``w, 2w, 4w`` (``w = 16``), stride 2 at the start of stages 2 and 3, Kaiming-normal
    init of convs and the linear weight (as the original, after PyTorch's default draws).

    Args:
        in_channels: input channels of ``x`` ``(B, in_channels, *spatial)``.
        out_channels: classes.
        dim: spatial dims (1, 2 or 3; the paper uses 2).
        conv: conv factory for the 3x3 convs, or ``None`` for plain bias-free 3x3 convs.
        depth: 20, 32, 44, 56, 110, 1202 or any ``6n + 2``.
        base_width: width of the first stage.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        conv: Optional[Callable[..., nn.Module]] = None,
        depth: int = 32,
        base_width: int = 16,
    ):
        super().__init__()
        check_dim("CIFARResNet", dim, (1, 2, 3))
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"CIFARResNet depth must be 6n + 2 (n >= 1), e.g. one of {CIFAR_RESNET_DEPTHS}; got {depth}."
            )
        n = (depth - 2) // 6
        self.depth = depth
        self.dim = dim
        if conv is None:
            self.conv1 = getattr(nn, f"Conv{dim}d")(in_channels, base_width, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = build_conv(conv, "CIFARResNet", in_channels, base_width, dim)
        self.bn1 = getattr(nn, f"BatchNorm{dim}d")(base_width)
        width = base_width
        for stage, (planes, stride) in enumerate(
            [(base_width, 1), (2 * base_width, 2), (4 * base_width, 2)], start=1
        ):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(width, planes, dim, stride if i == 0 else 1, conv))
                width = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.linear = nn.Linear(width, out_channels)
        self._init_weights(own_convs_only=conv is not None)

    def _init_weights(self, own_convs_only: bool) -> None:
        # Kaiming-normal in module order, as the original's `apply`; a given conv factory's
        # layers keep their own init.
        conv_cls = getattr(nn, f"Conv{self.dim}d")
        for module in self.modules():
            if module is self.linear or (not own_convs_only and isinstance(module, conv_cls)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = out.flatten(2).mean(-1)
        return self.linear(out)


def _register_depth(depth: int) -> None:
    def factory(in_channels: int, out_channels: int, dim: int = 2,
                conv: Optional[Callable[..., nn.Module]] = None, base_width: int = 16) -> CIFARResNet:
        return CIFARResNet(in_channels, out_channels, dim, conv=conv, depth=depth, base_width=base_width)

    factory.__name__ = factory.__qualname__ = f"CIFARResNet{depth}"
    factory.__doc__ = f"CIFAR ResNet-{depth} ({(depth - 2) // 6} blocks per stage); see CIFARResNet."
    factory.__module__ = __name__
    globals()[factory.__name__] = factory
    __all__.append(factory.__name__)
    BACKBONES.register(factory)


for _depth in CIFAR_RESNET_DEPTHS:
    _register_depth(_depth)

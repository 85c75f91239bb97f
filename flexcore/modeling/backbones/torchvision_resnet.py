"""torchvision's ImageNet ResNets for small images (the original's ``OriginalResnet*`` baselines).

Built from ``torchvision.models.resnet`` so weights and state-dict keys are torchvision's
(a torchvision checkpoint loads as is). Options adapt it to small inputs and other channel
counts, and can swap the 3x3 convolutions for any conv factory.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from flexcore.registry import BACKBONES

from .common import build_conv, check_dim

__all__ = ["TorchvisionResNet", "TORCHVISION_ARCHS"]

# arch -> (torchvision block class name, layers per stage, extra ResNet kwargs). Names, not
# classes: torchvision is imported only when a TorchvisionResNet is built, because importing
# it pulls in torch._dynamo (seconds at the start of every process otherwise).
TORCHVISION_ARCHS: Dict[str, Tuple[str, Tuple[int, ...], dict]] = {
    "resnet10": ("BasicBlock", (1, 1, 1, 1), {}),
    "resnet18": ("BasicBlock", (2, 2, 2, 2), {}),
    "resnet34": ("BasicBlock", (3, 4, 6, 3), {}),
    "resnet50": ("Bottleneck", (3, 4, 6, 3), {}),
    "resnet101": ("Bottleneck", (3, 4, 23, 3), {}),
    "resnet152": ("Bottleneck", (3, 8, 36, 3), {}),
    "resnext50_32x4d": ("Bottleneck", (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}),
    "wide_resnet50_2": ("Bottleneck", (3, 4, 6, 3), {"width_per_group": 128}),
}


class StridedConv(nn.Module):
    """A "same"-size conv followed by keeping every ``stride``-th output (= a strided conv)."""

    def __init__(self, conv: nn.Module, stride: int):
        super().__init__()
        self.conv = conv
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out[(..., *[slice(None, None, self.stride)] * (out.dim() - 2))]


def _replace_3x3(model: nn.Module, conv: Callable[..., nn.Module]) -> None:
    from torchvision.models import resnet as tv_resnet

    for module in model.modules():
        if isinstance(module, (tv_resnet.BasicBlock, tv_resnet.Bottleneck)):
            names = ("conv1", "conv2") if isinstance(module, tv_resnet.BasicBlock) else ("conv2",)
            for name in names:
                old: nn.Conv2d = getattr(module, name)
                if old.groups != 1:
                    raise ValueError("TorchvisionResNet: a conv factory cannot replace grouped convs (ResNeXt).")
                new = build_conv(conv, "TorchvisionResNet", old.in_channels, old.out_channels, 2)
                stride = old.stride[0]
                setattr(module, name, StridedConv(new, stride) if stride > 1 else new)


@BACKBONES.register()
class TorchvisionResNet(nn.Module):
    """torchvision ResNet (``resnet10/18/34/50/101/152``, ``resnext50_32x4d``, ``wide_resnet50_2``).

    With ``in_channels=3``, ``small_input=False`` and no ``conv`` this is exactly the
    original's ``OriginalResnet*`` (torchvision's module, init and keys; ``resnet10`` =
    basic blocks ``[1, 1, 1, 1]``).

    Args:
        in_channels: input channels of ``x`` ``(B, in_channels, H, W)``.
        out_channels: classes.
        dim: must be 2.
        conv: optional conv factory replacing the blocks' 3x3 convolutions.
        arch: one of :data:`TORCHVISION_ARCHS`.
        small_input: 3x3 stride-1 stem without max-pool (CIFAR-style, for 32px inputs).
        zero_init_residual: zero the last BN of each residual branch (torchvision option).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 2,
        conv: Optional[Callable[..., nn.Module]] = None,
        arch: str = "resnet18",
        small_input: bool = False,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        check_dim("TorchvisionResNet", dim, (2,))
        if arch not in TORCHVISION_ARCHS:
            raise ValueError(f"TorchvisionResNet: unknown arch {arch!r}; use one of {sorted(TORCHVISION_ARCHS)}.")
        from torchvision.models import resnet as tv_resnet

        block, layers, extra = TORCHVISION_ARCHS[arch]
        self.arch = arch
        net = tv_resnet.ResNet(getattr(tv_resnet, block), list(layers), num_classes=out_channels,
                               zero_init_residual=zero_init_residual, **extra)
        if in_channels != 3 or small_input:
            kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
            net.conv1 = nn.Conv2d(in_channels, 64, kernel, stride=stride, padding=padding, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        if small_input:
            net.maxpool = nn.Identity()
        if conv is not None:
            _replace_3x3(net, conv)
        # Keep torchvision's attribute names at top level (conv1, layer1, fc, ...).
        for name, child in net.named_children():
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

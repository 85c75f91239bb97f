"""Built-in backbones; importing this package registers them in ``flexcore.registry.BACKBONES``.

Contract: ``factory(in_channels, out_channels, dim, conv=<conv factory>, **hp) -> nn.Module``.
"""
from .cifar_resnet import CIFAR_RESNET_DEPTHS, CIFARResNet
from .common import expand_width_factors
from .flexnet import CKCNN, FlexNet, ResNetBlock
from .tcn import CKTCN, TCN, FlexTCN, TCNBlock
from .torchvision_resnet import TORCHVISION_ARCHS, TorchvisionResNet

__all__ = [
    "FlexNet",
    "CKCNN",
    "ResNetBlock",
    "TCN",
    "FlexTCN",
    "CKTCN",
    "TCNBlock",
    "CIFARResNet",
    "CIFAR_RESNET_DEPTHS",
    "TorchvisionResNet",
    "TORCHVISION_ARCHS",
    "expand_width_factors",
]

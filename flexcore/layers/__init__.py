"""nn building blocks: kernel nets, masks, continuous and discrete convolutions, N-Jet/SRF.

Importing this package registers every built-in kernel net, mask and convolution (the
registries' builtins point here).
"""
from flexcore.layers import kernels  # noqa: F401  (registers the kernel nets)
from flexcore.layers import functional
from flexcore.layers.bake import bake_model
from flexcore.layers.traversal import clear_kernel_caches, continuous_convs, refresh_crops
from flexcore.layers.conv import CKConv, ContinuousConv, Conv, FlexConv, SeparableFlexConv
from flexcore.layers.conv_base import BakedConv1d, BakedConv2d, BakedConv3d, ConvBase
from flexcore.layers.masks import GaussianMask, HannMask, Mask, NoMask, SigmoidMask
from flexcore.layers.srf import SRFConv, set_scale_factor

__all__ = [
    "functional",
    "ConvBase",
    "ContinuousConv",
    "CKConv",
    "FlexConv",
    "SeparableFlexConv",
    "Conv",
    "SRFConv",
    "BakedConv1d",
    "BakedConv2d",
    "BakedConv3d",
    "Mask",
    "GaussianMask",
    "SigmoidMask",
    "HannMask",
    "NoMask",
    "bake_model",
    "continuous_convs",
    "clear_kernel_caches",
    "refresh_crops",
    "set_scale_factor",
]

"""Turn a flexcore model into a plain-``torch.nn`` inference model that every exporter traces."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn

from flexcore.layers.bake import bake_model
from flexcore.layers.conv_base import BakedConv1d, BakedConv2d, BakedConv3d

__all__ = ["prepare_for_export", "direct_conv"]

_BAKED = (BakedConv1d, BakedConv2d, BakedConv3d)
_PLAIN_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_ZERO_PADS = {1: nn.ZeroPad1d, 2: nn.ZeroPad2d, 3: nn.ZeroPad3d}


def direct_conv(baked: nn.Module) -> nn.Module:
    """The direct-path equivalent of a ``BakedConv*d``: a plain ``nn.Conv*d`` (asymmetric or
    causal padding as an ``nn.ZeroPad*d`` in front of it). Same weights, same function."""
    dims = baked.weight.dim() - 2
    pads = [tuple(p) for p in baked.pads]
    symmetric = all(left == right for left, right in pads)
    conv = _PLAIN_CONVS[dims](
        baked.in_channels, baked.out_channels, tuple(baked.kernel_size), stride=baked.stride,
        padding=tuple(left for left, _ in pads) if symmetric else 0, groups=baked.groups,
        bias=baked.bias is not None, device=baked.weight.device, dtype=baked.weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(baked.weight)
        if baked.bias is not None:
            conv.bias.copy_(baked.bias)
    if symmetric:
        return conv
    flat = [p for left_right in reversed(pads) for p in left_right]  # last dim first, as F.pad
    return nn.Sequential(_ZERO_PADS[dims](tuple(flat)), conv)


def _replace_baked(module: nn.Module, prefix: str, replaced: List[Tuple[str, str]]) -> None:
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if isinstance(child, _BAKED):
            replaced.append((path, repr(child.fft)))
            setattr(module, name, direct_conv(child))
        else:
            _replace_baked(child, path + ".", replaced)


@torch.no_grad()
def prepare_for_export(model: nn.Module, sample: torch.Tensor) -> Tuple[nn.Module, List[Tuple[str, str]]]:
    """Bake ``model`` (in place) into plain ``torch.nn`` modules on the direct convolution path.

    ``sample`` (a batch of real inputs) runs once first, so that every layer's kernel grid
    and crop are those of inference. BatchNorms that follow a conv are folded into it;
    weights stay contiguous (no channels-last), which every runtime reads as is.

    flexcore's FFT path is not exported: it mixes channels in complex arithmetic, which ONNX
    cannot express, and caches kernel spectra per input shape, which tracing cannot follow.
    The direct path computes the same function; for large learned kernels it is slower.

    Returns:
        ``(model, replaced)``: ``replaced`` lists ``(layer, fft setting)`` of the baked convs
        that had an FFT-capable forward and now run the direct path.
    """
    model.eval()
    model(sample)
    baked = bake_model(model, fold_norms=True, channels_last=False).eval()
    replaced: List[Tuple[str, str]] = []
    if isinstance(baked, _BAKED):
        baked, replaced = direct_conv(baked), [("", repr(baked.fft))]
    else:
        _replace_baked(baked, "", replaced)
    for parameter in baked.parameters():
        parameter.requires_grad_(False)
    return baked, replaced

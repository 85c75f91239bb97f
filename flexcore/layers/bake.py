"""Bake a model for inference: every flexcore convolution becomes a plain ``nn.Conv*d``, BatchNorms folded."""
from __future__ import annotations

from typing import Union

import torch
import torch.nn as nn

from flexcore.layers.conv_base import ConvBase

__all__ = ["bake_model", "CONV_NORM_PAIRS_ATTR"]


def bake_model(model: nn.Module, fold_norms: bool = True, channels_last: Union[bool, str] = "auto") -> nn.Module:
    """Replace every flexcore convolution in ``model`` (in place) by its baked ``nn.Conv*d``.

    The baked model computes the same function as ``model.eval()`` with no kernel net or
    mask left to evaluate; it is what to export or serve. With ``fold_norms``, each
    BatchNorm that a module declares as directly following one of its convolutions
    (:data:`CONV_NORM_PAIRS_ATTR`, e.g. FlexNet's ``cconv1 -> norm1``) is folded into that
    conv's weight and bias (using its running statistics) and replaced by ``nn.Identity``.
    ``channels_last``: store the 2-D conv weights channels-last, so that every conv after
    the first runs in NHWC (oneDNN's native layout: a baked FlexNet-7 measured ~15% faster
    on CPU); ``'auto'`` = on CPU only (on GPU it pays with tensor cores, i.e.
    under half precision: pass True there). Returns ``model`` (or the baked layer if
    ``model`` itself is a convolution).
    """
    baked = _bake(model, fold_norms)
    if channels_last == "auto":
        channels_last = all(p.device.type == "cpu" for p in baked.parameters())
    if channels_last:
        for module in baked.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    return baked


def _bake(model: nn.Module, fold_norms: bool) -> nn.Module:
    if isinstance(model, ConvBase):
        return model.bake()
    for name, child in list(model.named_children()):
        if isinstance(child, ConvBase):
            setattr(model, name, child.bake())
        else:
            _bake(child, fold_norms)
    if fold_norms:
        for conv_name, norm_name in getattr(model, CONV_NORM_PAIRS_ATTR, ()):
            _fold_norm(model, conv_name, norm_name)
    return model


# A module lists ``(conv attribute, norm attribute)`` pairs here when the norm is applied
# directly to that conv's output (nothing in between, output used nowhere else).
CONV_NORM_PAIRS_ATTR = "conv_norm_pairs"

_PLAIN_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def _fold_norm(module: nn.Module, conv_name: str, norm_name: str) -> None:
    """Fold ``module.<norm_name>`` (a BatchNorm with running statistics) into the baked
    ``module.<conv_name>``; anything else (LayerNorm, a norm without statistics) is left."""
    conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
    if not isinstance(conv, _PLAIN_CONVS) or not isinstance(norm, _BATCH_NORMS):
        return
    if norm.running_mean is None or norm.running_var is None or conv.out_channels != norm.num_features:
        return
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    conv.weight.mul_(scale.to(conv.weight.dtype).view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
    if "_spectrum_cache" in conv.__dict__:
        del conv.__dict__["_spectrum_cache"]
    setattr(module, norm_name, nn.Identity())

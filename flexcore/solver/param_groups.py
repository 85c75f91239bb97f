"""Optimiser parameter groups: learning-rate factors and weight-decay rules per parameter kind.

Kinds, checked in this order:

- ``mask``: every parameter of a module whose class is registered in ``MASKS`` (built-in
  or plugin) — FlexConv's Gaussian mask widths. lr x ``mask_lr_factor`` (0.1 in every
  paper experiment), weight decay ``weight_decay_mask``.
- ``omega_0``: parameters named ``omega_0`` (SIREN's learnable frequency scale).
  lr x ``omega_0_lr_factor``, never decayed.
- ``no_decay``: biases and parameters of normalisation layers, decayed by
  ``weight_decay_bias`` / ``weight_decay_norm`` (0 unless asked).
- ``default``: everything else, ``weight_decay``.

Groups and the parameters inside them follow the model's module order (the original
used Python sets, so its optimiser states cannot be matched by position; ours can).
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, List, Tuple

import gin
import torch.nn as nn

from flexcore.registry import MASKS

__all__ = ["build_param_groups", "NORM_TYPES", "mask_types"]

logger = logging.getLogger("flexcore")

NORM_TYPES: Tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,  # noqa: SLF001 - the common base of BatchNorm1d/2d/3d and SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,  # noqa: SLF001
    nn.LocalResponseNorm,
)


def mask_types() -> Tuple[type, ...]:
    """Classes registered in ``MASKS`` (plugins included once loaded)."""
    return tuple(obj for obj in MASKS.values() if inspect.isclass(obj))


@gin.configurable(module="solver")
def build_param_groups(
    model: nn.Module,
    weight_decay: float = 0.0,
    mask_lr_factor: float = 1.0,
    omega_0_lr_factor: float = 1.0,
    weight_decay_mask: float = 0.0,
    weight_decay_bias: float = 0.0,
    weight_decay_norm: float = 0.0,
) -> List[Dict[str, Any]]:
    """Split ``model``'s trainable parameters into named groups (see the module docstring).

    Args:
        model: the network (unwrapped).
        weight_decay: decay of ``default`` parameters (optimiser-coupled L2 for Adam/SGD/
            RMSprop, decoupled for AdamW). The original's "weight decay" is the
            ``LnLoss`` regulariser instead; this stays 0 to match it.
        mask_lr_factor, omega_0_lr_factor: learning-rate multipliers of those kinds.
        weight_decay_mask, weight_decay_bias, weight_decay_norm: decay of those kinds.
    Returns:
        Non-empty groups in a fixed order, each ``{"name", "params", "lr_factor",
        "weight_decay"}``; optimiser factories turn ``lr_factor`` into ``lr``.
    """
    masks = mask_types()
    spec = {
        "default": (1.0, weight_decay),
        "no_decay_bias": (1.0, weight_decay_bias),
        "no_decay_norm": (1.0, weight_decay_norm),
        "mask": (mask_lr_factor, weight_decay_mask),
        "omega_0": (omega_0_lr_factor, 0.0),
    }
    buckets: Dict[str, List[nn.Parameter]] = {name: [] for name in spec}
    seen = set()
    mask_owned = set()
    for module in model.modules():
        if masks and isinstance(module, masks):
            mask_owned.update(id(p) for p in module.parameters())
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if id(param) in mask_owned:
                kind = "mask"
            elif param_name == "omega_0":
                kind = "omega_0"
            elif isinstance(module, NORM_TYPES):
                kind = "no_decay_norm"
            elif param_name == "bias" or param_name.endswith("_bias"):
                kind = "no_decay_bias"
            else:
                kind = "default"
            buckets[kind].append(param)
    groups = []
    for name, params in buckets.items():
        if params:
            lr_factor, decay = spec[name]
            groups.append({"name": name, "params": params, "lr_factor": float(lr_factor), "weight_decay": float(decay)})
    summary = ", ".join(f"{g['name']}: {len(g['params'])} tensors (lr x{g['lr_factor']:g}, wd {g['weight_decay']:g})" for g in groups)
    logger.info("Parameter groups: %s", summary)
    return groups

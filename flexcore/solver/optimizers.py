"""Optimisers registered in ``OPTIMIZERS``: ``factory(param_groups, lr, **hp)``.

``param_groups`` come from :func:`flexcore.solver.build_param_groups` (each group's
``lr_factor`` scales ``lr``) or are a plain iterable of parameters.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence

import torch

from flexcore.registry import OPTIMIZERS

__all__ = ["Adam", "AdamW", "SGD", "RMSprop", "apply_lr_factors"]


def apply_lr_factors(param_groups: Iterable[Any], lr: float) -> List[Dict[str, Any]]:
    """Groups with ``lr = lr * lr_factor`` (a bare parameter iterable becomes one group)."""
    groups = list(param_groups)
    if not groups:
        raise ValueError("The optimiser got no parameters: the model has no trainable parameter.")
    if isinstance(groups[0], torch.Tensor):
        groups = [{"name": "default", "params": groups}]
    out = []
    for group in groups:
        group = dict(group)
        group.setdefault("lr_factor", 1.0)
        group["lr"] = lr * group["lr_factor"]
        out.append(group)
    return out


@OPTIMIZERS.register()
def Adam(param_groups, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
         amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (the original's default; PyTorch defaults)."""
    return torch.optim.Adam(apply_lr_factors(param_groups, lr), lr=lr, betas=tuple(betas), eps=eps, amsgrad=amsgrad)


@OPTIMIZERS.register()
def AdamW(param_groups, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
          amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW: decoupled weight decay, taken per group from ``build_param_groups``."""
    return torch.optim.AdamW(apply_lr_factors(param_groups, lr), lr=lr, betas=tuple(betas), eps=eps, amsgrad=amsgrad)


@OPTIMIZERS.register()
def SGD(param_groups, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = False,
        dampening: float = 0.0) -> torch.optim.Optimizer:
    """SGD with (optionally Nesterov) momentum."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"SGD: nesterov needs momentum > 0 and dampening 0 (got momentum={momentum}, dampening={dampening})")
    return torch.optim.SGD(apply_lr_factors(param_groups, lr), lr=lr, momentum=momentum, nesterov=nesterov,
                           dampening=dampening)


@OPTIMIZERS.register()
def RMSprop(param_groups, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
            centered: bool = False) -> torch.optim.Optimizer:
    """RMSprop; keeps the mask/omega_0 groups (the original used a single group here)."""
    return torch.optim.RMSprop(apply_lr_factors(param_groups, lr), lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                               centered=centered)



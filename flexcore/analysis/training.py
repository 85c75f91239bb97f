"""Loss and optimiser for profiling training steps, built the way the trainer builds them."""
from __future__ import annotations

from typing import Callable, Tuple

import gin
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["training_components"]


def _loss_for(metadata) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if metadata.loss == "mse":
        return lambda out, target: F.mse_loss(out.reshape(target.shape), target.float())
    return lambda out, target: F.cross_entropy(out, target.long())


def training_components(model: nn.Module, metadata) -> Tuple[Callable, torch.optim.Optimizer]:
    """``(loss_fn, optimizer)`` for ``model``: the engine's task loss and gin-configured optimiser
    where available, else the metadata's loss and Adam (lr 1e-3)."""
    try:
        from flexcore.engine.evaluation import build_task

        loss_fn = build_task(metadata).loss
    except ImportError:
        loss_fn = _loss_for(metadata)
    try:
        from flexcore.solver import build_param_groups

        groups = build_param_groups(model)
    except ImportError:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    try:
        factory = gin.query_parameter("Trainer.optimizer")
        lr = gin.query_parameter("Trainer.lr")
        optimizer = factory.scoped_configurable_fn(groups, lr=lr)
    except (ValueError, AttributeError):
        optimizer = torch.optim.Adam(groups, lr=1e-3)
    return loss_fn, optimizer

"""Loss and optimiser for profiling training steps, built the way the trainer builds them."""
from __future__ import annotations

from typing import Callable, Tuple

import gin
import torch
import torch.nn as nn

from flexcore.engine.evaluation import build_task
from flexcore.solver import build_param_groups

__all__ = ["training_components"]


def training_components(model: nn.Module, metadata) -> Tuple[Callable, torch.optim.Optimizer]:
    """``(loss_fn, optimizer)`` for ``model``: the engine's task loss, and the gin-configured
    optimiser when the config binds ``Trainer.optimizer`` (else Adam, lr 1e-3)."""
    loss_fn = build_task(metadata).loss
    groups = build_param_groups(model)
    try:
        factory = gin.query_parameter("Trainer.optimizer")
        lr = gin.query_parameter("Trainer.lr")
        optimizer = factory.scoped_configurable_fn(groups, lr=lr)
    except (ValueError, AttributeError):
        optimizer = torch.optim.Adam(groups, lr=1e-3)
    return loss_fn, optimizer

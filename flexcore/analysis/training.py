"""Loss and optimiser for profiling training steps, built the way the trainer builds them."""
from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn as nn

from flexcore.engine.evaluation import build_task
from flexcore.engine.trainer_config import configured_value
from flexcore.registry import OPTIMIZERS
from flexcore.solver import build_param_groups

__all__ = ["training_components"]


def training_components(model: nn.Module, metadata) -> Tuple[Callable, torch.optim.Optimizer]:
    """``(loss_fn, optimizer)`` for ``model``: the engine's task loss, and the optimiser the
    config's ``Solver`` would build (Adam at ``Solver.lr``, 1e-3 unless bound, when it names none)."""
    loss_fn = build_task(metadata).loss
    groups = build_param_groups(model)
    lr = configured_value("lr", 1e-3)
    factory = configured_value("optimizer")
    build = getattr(factory, "scoped_configurable_fn", None) or OPTIMIZERS.get("Adam")
    return loss_fn, build(groups, lr=lr)

"""Learning-rate schedules registered in ``LR_SCHEDULES``, all stepped once per iteration.

``factory(optimizer, max_iter, iters_per_epoch, **hp)``. Every schedule is a closed form
of the iteration (no recursive updates, so a resumed run computes the very same rates)
with an optional linear warmup. Epoch quantities (``warmup_epochs``, ``milestones``,
exponential decay) are converted with ``iters_per_epoch``.

Warmup differs from the original on purpose: its factor is ``(it + 1) / W`` so the first
update already uses ``lr / W`` and iteration ``W - 1`` the full rate; the original's
factor ``it / W`` made the first optimisation step run at lr 0 (a wasted step).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from flexcore.registry import LR_SCHEDULES

logger = logging.getLogger("flexcore")

__all__ = ["Schedule", "Constant", "Cosine", "MultiStep", "Exponential", "Plateau"]


class Schedule(LRScheduler):
    """Base: ``lr_g(it) = warmup(it) * value(base_lr_g, it)`` for each parameter group.

    Args:
        optimizer: the optimiser whose group rates are set.
        max_iter: iterations of the run.
        iters_per_epoch: iterations per epoch (converts epoch-valued options).
        warmup_epochs: linear warmup length in epochs (0: none).
        warmup_iters: the same in iterations (give one of the two).
    """

    # Only these attributes go into checkpoints: the configuration comes from gin again.
    _STATE_KEYS = ("last_epoch", "base_lrs", "_step_count", "_last_lr")

    def __init__(self, optimizer: torch.optim.Optimizer, max_iter: int, iters_per_epoch: int,
                 warmup_epochs: float = 0.0, warmup_iters: int = 0):
        if max_iter <= 0 or iters_per_epoch <= 0:
            raise ValueError(f"{type(self).__name__}: max_iter ({max_iter}) and iters_per_epoch "
                             f"({iters_per_epoch}) must be positive")
        if warmup_epochs and warmup_iters:
            raise ValueError(f"{type(self).__name__}: give warmup_epochs or warmup_iters, not both")
        self.max_iter = int(max_iter)
        self.iters_per_epoch = int(iters_per_epoch)
        self.warmup_iters = int(warmup_iters or round(warmup_epochs * iters_per_epoch))
        if self.warmup_iters >= self.max_iter:  # e.g. a short smoke run of a long recipe
            logger.warning("%s: warmup (%d iterations) is not shorter than the run (%d); warming up over %d",
                           type(self).__name__, self.warmup_iters, self.max_iter, self.max_iter - 1)
            self.warmup_iters = self.max_iter - 1
        super().__init__(optimizer)

    def warmup_factor(self, it: int) -> float:
        if it < self.warmup_iters:
            return (it + 1) / self.warmup_iters
        return 1.0

    def value(self, base_lr: float, it: int) -> float:
        """Rate of a group with ``base_lr`` at iteration ``it``, before warmup."""
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        it = self.last_epoch  # LRScheduler counts steps in `last_epoch`; here: iterations
        return [self.warmup_factor(it) * self.value(base, it) for base in self.base_lrs]

    def state_dict(self) -> Dict[str, Any]:
        return {k: self.__dict__[k] for k in self._STATE_KEYS if k in self.__dict__}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


@LR_SCHEDULES.register(aliases=("constant",))
class Constant(Schedule):
    """The base rate throughout (after the optional warmup)."""

    def value(self, base_lr: float, it: int) -> float:
        return base_lr


@LR_SCHEDULES.register(aliases=("cosine",))
class Cosine(Schedule):
    """Cosine annealing from each group's rate to ``eta_min`` over the iterations after warmup.

    Args:
        eta_min: the final rate, the same absolute value for every group (as the
            original's ``CosineAnnealingLR(eta_min=1e-6)``: the mask group's 0.1x ratio
            is therefore not kept towards the end).
    """

    def __init__(self, optimizer, max_iter: int, iters_per_epoch: int, eta_min: float = 1e-6, **warmup: Any):
        self.eta_min = float(eta_min)
        super().__init__(optimizer, max_iter, iters_per_epoch, **warmup)

    def value(self, base_lr: float, it: int) -> float:
        span = self.max_iter - self.warmup_iters
        progress = min(max(it - self.warmup_iters, 0) / span, 1.0)
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


@LR_SCHEDULES.register(aliases=("multistep",))
class MultiStep(Schedule):
    """Multiply the rate by ``gamma`` at each milestone.

    Args:
        milestones: epochs at which to decay (may be fractional).
        milestone_iters: the same in iterations (give one of the two).
        gamma: decay factor (the original's ``1 / decay_factor``).
    """

    def __init__(self, optimizer, max_iter: int, iters_per_epoch: int, milestones: Sequence[float] = (),
                 milestone_iters: Sequence[int] = (), gamma: float = 0.1, **warmup: Any):
        if bool(milestones) == bool(milestone_iters):
            raise ValueError("MultiStep: give exactly one of milestones (epochs) or milestone_iters")
        its = list(milestone_iters) or [round(m * iters_per_epoch) for m in milestones]
        if sorted(its) != its:
            raise ValueError(f"MultiStep: milestones must increase, got {list(milestones or milestone_iters)}")
        self.milestone_iters = [int(i) for i in its]
        self.gamma = float(gamma)
        super().__init__(optimizer, max_iter, iters_per_epoch, **warmup)

    def value(self, base_lr: float, it: int) -> float:
        return base_lr * self.gamma ** sum(1 for m in self.milestone_iters if it >= m)


@LR_SCHEDULES.register(aliases=("exponential",))
class Exponential(Schedule):
    """Multiply the rate by ``gamma`` every epoch (a staircase, as the original's per-epoch step).

    Args:
        gamma: decay per epoch.
        per_iteration: decay smoothly, ``gamma ** (it / iters_per_epoch)``, instead.
    """

    def __init__(self, optimizer, max_iter: int, iters_per_epoch: int, gamma: float = 0.95,
                 per_iteration: bool = False, **warmup: Any):
        self.gamma = float(gamma)
        self.per_iteration = bool(per_iteration)
        super().__init__(optimizer, max_iter, iters_per_epoch, **warmup)

    def value(self, base_lr: float, it: int) -> float:
        epochs = it / self.iters_per_epoch if self.per_iteration else it // self.iters_per_epoch
        return base_lr * self.gamma ** epochs


@LR_SCHEDULES.register(aliases=("plateau",))
class Plateau(Schedule):
    """Multiply the rate by ``factor`` when the validation metric stops improving.

    Stepped every iteration (for warmup) and, after each evaluation, with the metric
    through :meth:`step_metric` (the ``LRScheduler`` hook does this).

    Args:
        factor: decay factor (the original's ``1 / decay_factor``).
        patience: evaluations without improvement tolerated before decaying.
        threshold: relative improvement that counts (PyTorch's ``rel`` mode).
        cooldown: evaluations to wait after a decay before counting again.
        min_lr: floor of every group's rate.
        mode: ``"max"``/``"min"``; None takes the evaluated metric's own direction.
    """

    _STATE_KEYS = Schedule._STATE_KEYS + ("scale", "best", "num_bad", "cooldown_left", "mode")

    def __init__(self, optimizer, max_iter: int, iters_per_epoch: int, factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, mode: Optional[str] = None,
                 **warmup: Any):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"Plateau: factor must be in (0, 1), got {factor}")
        if mode not in (None, "max", "min"):
            raise ValueError(f"Plateau: mode must be 'max', 'min' or None, got {mode!r}")
        self.factor, self.patience, self.threshold = float(factor), int(patience), float(threshold)
        self.cooldown, self.min_lr, self.mode = int(cooldown), float(min_lr), mode
        self.scale = 1.0
        self.best: Optional[float] = None
        self.num_bad = 0
        self.cooldown_left = 0
        super().__init__(optimizer, max_iter, iters_per_epoch, **warmup)

    def value(self, base_lr: float, it: int) -> float:
        return max(base_lr * self.scale, self.min_lr)

    def _improved(self, metric: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return metric > self.best * (1.0 + self.threshold) if self.best >= 0 else metric > self.best * (1.0 - self.threshold)
        return metric < self.best * (1.0 - self.threshold) if self.best >= 0 else metric < self.best * (1.0 + self.threshold)

    def step_metric(self, metric: float, mode: str = "max") -> None:
        """Report a validation result; decays the rate after ``patience`` bad evaluations."""
        self.mode = self.mode or mode
        if self._improved(metric):
            self.best = float(metric)
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.scale *= self.factor
            self.cooldown_left = self.cooldown
            self.num_bad = 0
            lrs = self.get_lr()
            for group, lr in zip(self.optimizer.param_groups, lrs):
                group["lr"] = lr
            self._last_lr = lrs

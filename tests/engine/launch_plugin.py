"""Hooks the launcher tests add to real training runs (``--plugin tests/engine/launch_plugin.py``).

    --gin "Trainer.extra_hooks = [@FailOnRank]" --gin "FailOnRank.rank = 1"
    --gin "Trainer.extra_hooks = [@SlowSteps]" --gin "SlowSteps.seconds = 0.5"
"""
import os
import time

from flexcore.engine.train_loop import HookBase
from flexcore.registry import HOOKS
from flexcore.utils import comm


@HOOKS.register()
class FailOnRank(HookBase):
    """Raise on one rank after a given iteration (what a crashing process looks like)."""

    def __init__(self, rank: int = 0, iteration: int = 1):
        self.rank, self.iteration = rank, iteration

    def after_step(self):
        if comm.get_rank() == self.rank and self.trainer.iter >= self.iteration:
            raise RuntimeError(f"FailOnRank: rank {self.rank} fails at iteration {self.trainer.iter} on purpose")


@HOOKS.register()
class SlowSteps(HookBase):
    """Sleep after every step, so that a test can interrupt a run half-way.

    ``first_start_only``: not in a job SLURM restarted (``SLURM_RESTART_COUNT`` > 0)."""

    def __init__(self, seconds: float = 0.5, first_start_only: bool = False):
        self.seconds = seconds
        if first_start_only and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
            self.seconds = 0.0

    def after_step(self):
        time.sleep(self.seconds)

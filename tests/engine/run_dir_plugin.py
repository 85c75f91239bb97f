"""Hooks the run-dir tests add to real training runs (``--plugin tests/engine/run_dir_plugin.py``).

    --gin "Trainer.extra_hooks = [@WaitForFile]" --gin "WaitForFile.path = '/tmp/go'"
    --gin "Trainer.extra_hooks = [@FillDisk]" --gin "FillDisk.path = '/mnt/small/filler'"
"""
import errno
import os
import time

import torch

from flexcore.engine.train_loop import HookBase, unwrap_model
from flexcore.registry import HOOKS


@HOOKS.register()
class WaitForFile(HookBase):
    """After ``iteration``, wait until ``path`` exists: a run that stays alive while a test probes it."""

    def __init__(self, path: str = "", iteration: int = 1, timeout_s: float = 300.0):
        self.path, self.iteration, self.timeout_s = path, iteration, timeout_s

    def after_step(self):
        if self.trainer.iter != self.iteration:
            return
        open(self.path + ".waiting", "w").close()  # tells the test this run is past its first writes
        end = time.time() + self.timeout_s
        while not os.path.exists(self.path) and time.time() < end:
            time.sleep(0.05)


@HOOKS.register()
class FillDisk(HookBase):
    """After ``iteration``, fill the file system holding ``path`` to the last byte (a real ENOSPC)."""

    def __init__(self, path: str = "", iteration: int = 1):
        self.path, self.iteration = path, iteration

    def after_step(self):
        if self.trainer.iter != self.iteration:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        size = 1 << 16
        try:
            while size:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size //= 2  # down to the last free byte
        finally:
            os.close(fd)


@HOOKS.register()
class ForgetBeforeLastStep(HookBase):
    """Zeroes the output layer's weights before the last iteration, so the final validation is
    not the best one and the final test must load ``model_best.pth``."""

    def before_step(self):
        if self.trainer.iter == self.trainer.max_iter - 1:
            layers = [m for m in unwrap_model(self.trainer.model).modules()
                      if isinstance(getattr(m, "weight", None), torch.nn.Parameter) and m.weight.dim() >= 2]
            with torch.no_grad():
                layers[-1].weight.zero_()

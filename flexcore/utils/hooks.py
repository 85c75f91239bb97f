"""The training-loop hook protocol, below every package that defines hooks.

``layers`` (crop refresh), ``analysis`` (kernel sizes and report, profiler, FLOPs) and
``engine`` (checkpoints, evaluation, writers) each define the hooks for what they know;
the engine's loop (:class:`flexcore.engine.TrainerBase`) only runs them. Keeping the
protocol here lets a lower package define a hook without importing the engine.
"""
from __future__ import annotations

from typing import Any, Dict

import torch.nn as nn

__all__ = ["HookBase", "unwrap_model"]


class HookBase:
    """A training-loop hook: override the phases you need.

    ``self.trainer`` is set (as a weak proxy) when the hook is registered. Hooks that
    must survive a resume return their state from :meth:`state_dict`; it is saved in
    every checkpoint under the hook's class name.
    """

    trainer: Any = None  # the TrainerBase running this hook

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_backward(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model

"""Checks and small builders behind ``Trainer``'s options (kept apart so the trainer stays an assembler)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

import torch
import torch.nn as nn

from flexcore.utils import comm

__all__ = ["check_options", "resolve_device", "build_regularizers"]


def _check_counts(minimum: int = 1, **values: Any) -> None:
    """ValueError naming the ``Trainer`` argument unless each value is an integer >= ``minimum``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"Trainer.{name} must be an integer >= {minimum}, got {value!r} "
                             f"(e.g. --gin 'Trainer.{name} = {max(minimum, 1)}').")


def check_options(o: Mapping[str, Any]) -> None:
    """ValueError naming the ``Trainer`` binding and a fix for the first invalid option."""
    if o["period_unit"] not in ("epoch", "iter"):
        raise ValueError(f"Trainer.period_unit must be 'epoch' or 'iter', got {o['period_unit']!r}")
    _check_counts(batch_size=o["batch_size"], eval_batch_size=o["eval_batch_size"] or o["batch_size"],
                  log_period=o["log_period"])
    _check_counts(minimum=0, **{k: o[k] for k in ("num_workers", "epochs", "max_iter", "eval_period",
                                                  "checkpoint_period", "profile_steps")})
    lr = o["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0:
        raise ValueError(f"Trainer.lr must be a number >= 0, got {lr!r} (e.g. --gin 'Trainer.lr = 1e-3').")
    if not o["grad_clip"] >= 0:
        raise ValueError(f"Trainer.grad_clip must be >= 0 (0: no clipping), got {o['grad_clip']!r}")
    if bool(o["epochs"]) == bool(o["max_iter"]):
        raise ValueError(
            f"Give exactly one of Trainer.epochs ({o['epochs']}) or Trainer.max_iter ({o['max_iter']}) "
            "(e.g. --gin 'Trainer.epochs = 10')."
        )
    if o["fft_autotune"] and o["deterministic"]:
        raise ValueError(
            "Trainer.fft_autotune = True times both convolution paths and may pick either, which "
            "deterministic = True rules out; turn one of them off"
        )


def resolve_device(device: str) -> torch.device:
    """``"auto"``: this rank's GPU if there is one, else the CPU; any other value as given."""
    if device == "auto":
        return torch.device(f"cuda:{comm.get_local_rank()}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def build_regularizers(regularizers) -> Dict[str, Callable[[nn.Module], torch.Tensor]]:
    """name -> built regularizer, from ``Trainer.regularizers`` (a mapping, or factories named after themselves)."""
    items = regularizers.items() if isinstance(regularizers, Mapping) else [
        (getattr(factory, "__name__", type(factory).__name__), factory) for factory in regularizers
    ]
    built = {}
    for name, factory in items:
        if name in built:
            raise ValueError(f"Two regularizers are named {name!r}; give them names: Trainer.regularizers = {{...}}")
        built[name] = factory()
    return built

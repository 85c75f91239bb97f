"""Seeding and determinism switches."""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

__all__ = ["seed_all_rng", "set_deterministic"]

logger = logging.getLogger("flexcore")


def seed_all_rng(seed: int) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device).

    Args:
        seed: a non-negative integer; -1 draws one from the OS (logged, so the run can be repeated).
    Returns:
        the seed used.
    """
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        logger.info("Drew seed %d (set Trainer.seed / --seed to repeat this run)", seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by worker processes started later
    return seed


def set_deterministic(deterministic: bool) -> None:
    """Deterministic kernels (``torch.use_deterministic_algorithms``) or cuDNN autotuning.

    On CPU training is deterministic either way for a fixed seed; on GPU this trades speed
    for bitwise repeatability (an op without a deterministic kernel then raises).
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic

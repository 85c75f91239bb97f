"""Seeding and determinism switches."""
from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Iterator, Optional

import numpy as np
import torch

__all__ = ["seed_all_rng", "set_deterministic", "torch_settings"]

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
        logger.info("Drew seed %d (set Runtime.seed / --seed to repeat this run)", seed)
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


@contextlib.contextmanager
def torch_settings(num_threads: Optional[int] = None, deterministic: bool = False) -> Iterator[None]:
    """torch's process-wide switches for one run, restored on exit.

    Inside the block: ``num_threads`` CPU threads (None: unchanged) and
    :func:`set_deterministic` ``(deterministic)``. On exit the thread count, the
    deterministic-algorithms flag, cuDNN's ``deterministic``/``benchmark`` and
    ``CUBLAS_WORKSPACE_CONFIG`` are as they were before.
    """
    cudnn = torch.backends.cudnn
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.deterministic, cudnn.benchmark,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        if num_threads:
            torch.set_num_threads(num_threads)
        set_deterministic(deterministic)
        yield
    finally:
        threads, algorithms, warn_only, cudnn.deterministic, cudnn.benchmark, cublas = saved
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas

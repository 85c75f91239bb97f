"""One micro-timer for every place that compares the speed of a few functions.

Used by the benchmark harness (medians and spreads of many samples) and by the FFT
autotune in ``flexcore.layers.fft_cost`` (the best of a few samples). Both need the same
care: variants timed interleaved (a, b, a, b, ...) so load on a shared machine hits them
alike, and sub-millisecond calls repeated within a sample so timer and scheduler noise do
not dominate.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, List, Sequence

import torch

__all__ = ["time_interleaved"]


def time_interleaved(
    fns: Sequence[Callable[[], Any]],
    rounds: int,
    min_sample_s: float,
    warmup: int = 1,
    budget_s: float = math.inf,
    clock: Callable[[], float] = time.perf_counter,
    device_type: str = "cpu",
) -> List[List[float]]:
    """Seconds per call of each function, one sample per round, interleaved across functions.

    The warm-up calls (at least one, untimed for the result) also fix how many calls one
    sample repeats, so that a sample lasts about ``min_sample_s``. Stops early once
    ``budget_s`` seconds of wall time have been spent, after at least two rounds (one if a
    single round took more than twice the budget), so slow variants stay affordable.
    ``clock`` may be a CPU-time clock; on ``device_type == "cuda"`` the device is
    synchronised around each sample so queued kernels are counted.
    """
    sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)

    def sample(fn: Callable[[], Any], calls: int) -> float:
        sync()
        start = clock()
        for _ in range(calls):
            fn()
        sync()
        return (clock() - start) / calls

    calls = []
    for fn in fns:
        elapsed = 0.0
        for _ in range(max(warmup, 1)):
            elapsed = sample(fn, 1)
        calls.append(max(1, math.ceil(min_sample_s / max(elapsed, 1e-6))))
    samples: List[List[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for r in range(rounds):
        for i, fn in enumerate(fns):
            samples[i].append(sample(fn, calls[i]))
        spent = time.perf_counter() - start
        if spent > budget_s and (r >= 1 or spent > 2 * budget_s):
            break
    return samples

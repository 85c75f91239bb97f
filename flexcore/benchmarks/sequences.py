"""``sequences`` benchmark: FlexTCN train steps at long lengths, with memory.

The model is the original's sCIFAR-10 FlexTCN (fixture ``flextcn_scifar10``: 2 blocks,
width 30, MAGNet, Gaussian mask, horizon ``'same'``) built at init for each length, so the
kernel covers the same fraction of the sequence at every length (83 taps at 1,024). A
direct convolution would then grow as L^2; the FFT path should grow as L log L. Memory is
the peak resident set size during one step above the resident size before it (Linux
``/proc/self/status``, peak reset through ``clear_refs``); lengths run in increasing order.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from flexcore.benchmarks.models import (
    ORIGINAL_MS,
    _fixtures_dir,
    fmt,
    load_fixture_model,
    probe_fn,
    set_fft,
    train_step_fn,
)
from flexcore.benchmarks.harness import Check, Report, Table, register_benchmark, time_round_robin
from flexcore.layers.traversal import continuous_convs

__all__ = ["peak_rss_during", "n_log_n_growth"]

TCN_CASE = "flextcn_scifar10"


def _status_kib(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_during(fn: Callable[[], None]) -> Tuple[Optional[float], Optional[float]]:
    """``(peak RSS during fn() above the RSS before it, peak RSS)`` in MiB; (None, None) where
    the peak cannot be reset (not Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        fn()
        return None, None
    before = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None, None
    return (peak - before) / 1024, peak / 1024


def n_log_n_growth(l1: int, t1: float, l2: int, t2: float) -> float:
    """Measured growth ``t2 / t1`` over the ``L log L`` growth; <= 1 means no faster than L log L."""
    return (t2 / t1) / ((l2 * math.log2(l2)) / (l1 * math.log2(l1)))


def _tcn(folder: Path, length: int, device) -> torch.nn.Module:
    model, _ = load_fixture_model(folder, TCN_CASE, with_weights=False)
    for _, conv in continuous_convs(model):
        conv.set_resolution("same")  # grid = this length, fixed by the first forward
    model.to(device)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, length, device=device))
    return model


def _arguments(p) -> None:
    p.add_argument("--fixtures", default=None, help="seed fixture folder (default: tests/fixtures/seed)")
    p.add_argument("--lengths", type=int, nargs="+", default=None, help="sequence lengths (default 1024 16000 65536)")
    p.add_argument("--seq-batch", type=int, default=None, help="batch of the length sweep (default 4; quick 2)")


@register_benchmark("sequences", "FlexTCN train steps at L = 1,024 / 16,000 / 65,536: time, L log L growth, memory", _arguments)
def bench_sequences(args) -> Report:
    dev = torch.device(args.device)
    folder = _fixtures_dir(args)
    lengths = args.lengths or ([256, 1024] if args.quick else [1024, 16000, 65536])
    batch = args.seq_batch or (2 if args.quick else 4)
    report = Report()

    # L = 1,024 at the original's batch 16, against its figure and the direct path.
    b16 = 2 if args.quick else 16
    ref_table = Table("FlexTCN sCIFAR-10 (L = 1,024) training step (fwd + loss + bwd + Adam)",
                      ["batch", "kernel", "flexcore ms", "IQR", "spatial ref ms", "IQR", "vs ref", "original ms",
                       "vs original", "vs original (load-scaled)"])
    model = _tcn(folder, 1024, dev)
    x = torch.randn(b16, 3, 1024, device=dev)
    y = torch.randint(0, 10, (b16,), device=dev)
    fns = {"flexcore": train_step_fn(model, x, y),
           "spatial ref": train_step_fn(set_fft(_tcn(folder, 1024, dev), False), x, y)}
    if not args.quick:
        fns["probe"] = probe_fn(dev)
    t = time_round_robin(fns, args.repeat, args.warmup, args.budget)
    factor = t["probe"].median / ORIGINAL_MS["conv2d_5x5_train"] if "probe" in t else 1.0
    original = ORIGINAL_MS["flextcn_train_b16"]
    ksize = [c.kernel_size()[0] for _, c in continuous_convs(model)]
    ref_table.rows.append([b16, ksize[0], fmt(t["flexcore"].median), t["flexcore"].spread, fmt(t["spatial ref"].median),
                           t["spatial ref"].spread, fmt(t["flexcore"].median / t["spatial ref"].median), fmt(original),
                           fmt(t["flexcore"].median / original), fmt(t["flexcore"].median / (original * factor))])
    report.tables.append(ref_table)
    report.data["scifar10"] = {"batch": b16, "kernel": ksize, "times": {k: v.to_dict() for k, v in t.items()},
                               "original_ms": original, "machine_factor": factor}

    table = Table(f"FlexTCN training step vs sequence length (batch {batch}, kernel grows with L)",
                  ["length", "kernel", "path", "step ms", "IQR", "growth vs previous", "L log L growth",
                   "growth / L log L", "peak RSS above start MiB", "peak RSS MiB"])
    report.tables.append(table)
    previous: Optional[Tuple[int, float]] = None
    worst = 0.0
    for length in sorted(lengths):
        model = _tcn(folder, length, dev)
        x = torch.randn(batch, 3, length, device=dev)
        y = torch.randint(0, 10, (batch,), device=dev)
        step = train_step_fn(model, x, y)
        step()  # warm-up, and fixes allocator pools before the memory reading
        extra_mib, peak_mib = peak_rss_during(step)
        t = time_round_robin({"step": step}, args.repeat, args.warmup, args.budget)["step"]
        convs = [c for _, c in continuous_convs(model)]
        k = convs[0].kernel_size()[0]
        path = "fft" if convs[0]._use_fft(x, (k,), convs[0].pads((k,)), convs[0]._low_rank_maps(), training=True) else "spatial"
        growth = nlogn = ratio = "-"
        if previous is not None:
            l1, t1 = previous
            growth = t.median / t1
            nlogn = (length * math.log2(length)) / (l1 * math.log2(l1))
            ratio = n_log_n_growth(l1, t1, length, t.median)
            worst = max(worst, ratio)
        table.rows.append([length, k, path, fmt(t.median), t.spread, fmt(growth), fmt(nlogn), fmt(ratio),
                           "-" if extra_mib is None else fmt(extra_mib), "-" if peak_mib is None else fmt(peak_mib)])
        report.data.setdefault("lengths", []).append(
            {"length": length, "batch": batch, "kernel": k, "path": path, "time": t.to_dict(),
             "peak_rss_above_start_mib": extra_mib, "peak_rss_mib": peak_mib})
        previous = (length, t.median)
        del model, step
    table.note = ("growth / L log L <= 1: the step grows no faster than L log L between consecutive lengths. "
                  "Memory: peak resident set during one step above the resident set before it.")
    if len(lengths) > 1:
        report.checks.append(Check("FlexTCN step growth / (L log L growth), worst consecutive pair", worst, 1.0))
    return report

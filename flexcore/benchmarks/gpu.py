"""``gpu`` benchmark: the evidence a GPU run must produce, in one command and one JSON.

    tools/benchmark.py gpu --device cuda --markdown output/benchmark/gpu.md
    tools/benchmark.py gpu --device cpu --quick --skip-compile     # the same code path on a CPU

Three parts, all on the seed fixtures' models (``flexnet7_cifar10`` at init, all kernels
5x5; ``flexnet7_cifar10_perturbed`` with trained-like kernels 5x5 ... 33x33):

1. **Host synchronisations** during one FlexNet-7 training step (after warm-up, masks
   moving), one eval forward and one baked-model forward. On CUDA they are counted twice:
   by ``torch.cuda.set_sync_debug_mode("warn")`` (every synchronising CUDA call, C++ ones
   included) and by :class:`~flexcore.utils.host_sync.count_host_reads` (Python-level reads,
   with the line that made each); on a CPU by the latter alone. Targets: at most one per
   training step whatever the depth, none in eval or in a baked model.
2. **Training-step time** of FlexNet-7 (init and trained-like), CKCNN-7 and the sCIFAR-10
   FlexTCN: float32, bf16 autocast, channels-last (2-D only), ``torch.compile`` (its first
   steps, where it compiles, reported apart) and the direct path (``fft=False``, the
   original's algorithm), timed round-robin in the same run; images/s and the hours 350
   CIFAR-10 epochs (782 steps of 64) would take.
3. **Device parity**: float32 outputs on the device against the CPU (TF32 off), which the
   layer and model parity tests establish against the original on the CPU.

Targets that only make sense on a GPU (epoch time, bf16 speed-up, parity) are checked on
CUDA only; the sync counts are checked everywhere.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from flexcore.benchmarks.harness import Check, Report, Stats, Table, register_benchmark, time_round_robin
from flexcore.benchmarks.models import (
    INIT_CASE,
    TRAINED_CASE,
    _fixtures_dir,
    ckcnn_from,
    fmt,
    kernel_sizes,
    load_fixture_model,
    set_fft,
    train_step_fn,
)
from flexcore.benchmarks.sequences import _tcn
from flexcore.engine.accelerate import compile_model, to_channels_last
from flexcore.layers.bake import bake_model
from flexcore.layers.traversal import continuous_convs
from flexcore.utils.host_sync import count_host_reads

__all__ = ["count_syncs", "epoch_figures", "STEPS_PER_EPOCH", "EPOCHS"]

STEPS_PER_EPOCH, EPOCHS = 782, 350  # CIFAR-10: 50,000 training images in batches of 64; the paper's schedule
EPOCH_TARGET_S, BF16_SPEEDUP_TARGET, PARITY_TARGET = 20.0, 1.3, 1e-5
MODEL_NAMES = ("flexnet7_init", "flexnet7_trained", "ckcnn7", "flextcn_scifar10")


# -- host synchronisations ------------------------------------------------------------------
@contextlib.contextmanager
def _cuda_sync_warnings(device: torch.device) -> Iterator[Optional[List[warnings.WarningMessage]]]:
    """Records CUDA's synchronisation warnings inside (None off CUDA)."""
    if device.type != "cuda":
        yield None
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode(0)


def count_syncs(fn: Callable[[], Any], roots: Tuple[Any, ...], device: torch.device) -> Dict[str, Any]:
    """Run ``fn`` once, counting host reads (every device) and CUDA's synchronisation warnings (CUDA).

    ``syncs`` is the figure to check: CUDA's own count on a GPU, the host-read count elsewhere.
    """
    result: Dict[str, Any] = {}
    with _cuda_sync_warnings(device) as caught:
        try:
            with count_host_reads(*roots) as reads:
                fn()
            result["host_reads"] = reads.count
            result["host_read_sites"] = [f"{kind} at {where}" for kind, where in reads.reads]
        except Exception as exc:  # the counter itself failed on this device: keep CUDA's count
            result["host_reads"], result["host_read_error"] = None, f"{type(exc).__name__}: {exc}"
            if caught is not None:
                caught.clear()  # count the rerun alone
            fn()
    if caught is not None:
        messages = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
        result["cuda_sync_warnings"] = len(messages)
        result["cuda_sync_messages"] = sorted(set(m.splitlines()[0][:200] for m in messages))
    result["syncs"] = result["cuda_sync_warnings"] if caught is not None else result["host_reads"]
    return result


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run():
        with torch.no_grad():
            model(x)

    return run


def _sync_rows(report: Report, models: Dict[str, nn.Module], x, y, dev: torch.device) -> None:
    table = Table("Host synchronisations (one call after warm-up)",
                  ["model", "FlexConv layers", "phase", "syncs", "target", "host reads (Python)",
                   "CUDA sync warnings", "where"])
    report.tables.append(table)
    for name, model in models.items():
        layers = len(list(continuous_convs(model)))
        train = copy.deepcopy(model).to(dev)
        phases = {"train step": (train_step_fn(train, x, y, lr=1e-3), train, 1)}  # masks move: crops stale
        served = copy.deepcopy(model).to(dev)
        _forward(served, x)()  # fills the eval caches and records the shape baking resolves 'auto' at
        baked = bake_model(copy.deepcopy(served)).eval()
        phases["eval forward"] = (_forward(served, x), served, 0)
        phases["baked forward"] = (_forward(baked, x), baked, 0)
        for phase, (fn, module, target) in phases.items():
            for _ in range(2):
                fn()  # warm-up: grids fixed, caches filled, allocator settled
            counts = count_syncs(fn, (module, x), dev)
            where = "; ".join(counts.get("host_read_sites", []) + counts.get("cuda_sync_messages", []))
            table.rows.append([name, layers, phase, counts["syncs"], f"<= {target}", counts["host_reads"],
                               counts.get("cuda_sync_warnings", "-"), where or "-"])
            report.data.setdefault("syncs", []).append(dict(counts, model=name, layers=layers, phase=phase,
                                                            target=target))
            report.checks.append(Check(f"host syncs, {name}, {phase}", counts["syncs"], target))
    table.note = ("train step: refresh_crops + forward + loss + backward + Adam (lr 1e-3, so every crop is "
                  "stale); syncs = CUDA's set_sync_debug_mode count on a GPU, the Python host-read count "
                  "(flexcore.utils.host_sync) elsewhere.")


# -- training-step time ---------------------------------------------------------------------
def epoch_figures(step_ms: float, batch: int) -> Dict[str, float]:
    """Images/s, seconds per CIFAR-10 epoch and hours for the full schedule at this step time."""
    epoch_s = step_ms * STEPS_PER_EPOCH / 1e3
    return {"images_per_s": batch / (step_ms / 1e3), "epoch_s": epoch_s, "schedule_h": epoch_s * EPOCHS / 3600}


def _variants(name: str, model: nn.Module, x, y, args) -> Dict[str, Callable[[], None]]:
    fns = {"float32": train_step_fn(copy.deepcopy(model), x, y),
           "bf16 autocast": train_step_fn(copy.deepcopy(model), x, y, amp=torch.bfloat16)}
    if x.dim() == 4:
        fns["channels-last"] = train_step_fn(to_channels_last(copy.deepcopy(model)),
                                             x.contiguous(memory_format=torch.channels_last), y)
    if not args.skip_compile and name in args.compile_models:
        fns["torch.compile"] = train_step_fn(compile_model(copy.deepcopy(model), backend=args.compile_backend), x, y)
    fns["direct (fft=False)"] = train_step_fn(set_fft(copy.deepcopy(model), False), x, y)
    return fns


def _time_model(report: Report, table: Table, name: str, model: nn.Module, x, y, args) -> Dict[str, Stats]:
    fns = _variants(name, model, x, y, args)
    first: Dict[str, float] = {}
    for variant, fn in fns.items():  # torch.compile compiles here; the others fill caches
        _synchronize(x.device)
        start = time.perf_counter()
        fn()
        fn()
        _synchronize(x.device)
        first[variant] = time.perf_counter() - start
    stats = time_round_robin(fns, args.repeat, args.warmup, args.budget)
    batch = x.shape[0]
    for variant, s in stats.items():
        figures = epoch_figures(s.median, batch)
        compile_s = first[variant] - 2 * s.median / 1e3 if variant == "torch.compile" else None
        table.rows.append([name, variant, batch, fmt(s.median), s.spread, fmt(figures["images_per_s"]),
                           fmt(figures["epoch_s"]), fmt(figures["schedule_h"]), fmt(s.median / stats["float32"].median),
                           fmt(first[variant]), "-" if compile_s is None else fmt(compile_s)])
        report.data.setdefault("steps", []).append(
            dict(figures, model=name, variant=variant, batch=batch, input_shape=list(x.shape), time=s.to_dict(),
                 first_two_steps_s=first[variant], compile_s=compile_s))
    return stats


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_checks(report: Report, stats: Dict[str, Stats], dev: torch.device, quick: bool) -> None:
    """The GPU targets on the trained-like FlexNet-7 (CUDA, full size only)."""
    if dev.type != "cuda" or quick:
        return
    f32 = stats["float32"].median
    best_name = min((v for v in stats if v != "direct (fft=False)"), key=lambda v: stats[v].median)
    report.checks.append(Check("FlexNet-7 trained-like epoch s (782 steps, float32)",
                               epoch_figures(f32, 64)["epoch_s"], EPOCH_TARGET_S))
    report.checks.append(Check(f"FlexNet-7 trained-like epoch s (782 steps, fastest: {best_name})",
                               epoch_figures(stats[best_name].median, 64)["epoch_s"], EPOCH_TARGET_S))
    report.checks.append(Check(f"FlexNet-7 trained-like bf16 / float32 step time (target = 1/{BF16_SPEEDUP_TARGET:g})",
                               stats["bf16 autocast"].median / f32, 1 / BF16_SPEEDUP_TARGET))


# -- device parity --------------------------------------------------------------------------
@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.detach().cpu().double() - ref.detach().double()).abs().max()
            / ref.detach().double().abs().max().clamp_min(1e-30)).item()


def _parity_rows(report: Report, models: Dict[str, Tuple[nn.Module, torch.Tensor]], dev: torch.device) -> None:
    """Float32 train-mode output and input gradient, and eval output, on the device vs the CPU."""
    table = Table("Device vs CPU, float32 (TF32 off)", ["model", "train output", "input grad", "eval output"])
    report.tables.append(table)
    with _no_tf32():
        for name, (model, x) in models.items():
            outs = {}
            for where in ("cpu", dev):
                m = copy.deepcopy(model).to(where).train()
                xi = x.detach().to(where).requires_grad_(True)
                out = m(xi)
                out.square().sum().backward()
                outs[str(where)] = (out, xi.grad, m.eval()(xi.detach()))
            ref, got = outs["cpu"], outs[str(dev)]
            errors = [_relative_error(g, r) for g, r in zip(got, ref)]
            table.rows.append([name] + [f"{e:.2g}" for e in errors])
            report.data.setdefault("parity", []).append({"model": name, "train_output": errors[0],
                                                         "input_grad": errors[1], "eval_output": errors[2]})
            if dev.type == "cuda":
                report.checks.append(Check(f"device vs CPU relative error, {name}", max(errors), PARITY_TARGET))
    table.note = "max |device - CPU| / max |CPU| per output; on a CPU run both sides are the CPU (a smoke test)."


# -- the command ----------------------------------------------------------------------------
def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixtures", default=None, help="seed fixture folder (default: tests/fixtures/seed)")
    p.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (minutes of compiling on CPU)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--compile-models", nargs="+", default=["flexnet7_trained"], choices=MODEL_NAMES,
                   help="models also timed under torch.compile (default: the trained-like FlexNet-7; each compile "
                        "takes about a minute)")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES,
                   help="models in the step-time table (default: all)")


def _inputs(args, dev: torch.device):
    batch, size, length = (2, 16, 256) if args.quick else (64, 32, 1024)
    images = (torch.randn(batch, 3, size, size, device=dev), torch.randint(0, 10, (batch,), device=dev))
    sequences = (torch.randn(batch, 3, length, device=dev), torch.randint(0, 10, (batch,), device=dev))
    return images, sequences, length


@register_benchmark("gpu", "GPU evidence in one run: host syncs per step, FlexNet-7/CKCNN/FlexTCN step times "
                    "(float32, bf16, channels-last, compile, direct path), device-vs-CPU parity", _arguments)
def bench_gpu(args) -> Report:
    dev = torch.device(args.device)
    folder = _fixtures_dir(args)
    (x, y), (xs, ys), length = _inputs(args, dev)
    init, _ = load_fixture_model(folder, INIT_CASE)
    trained, spec = load_fixture_model(folder, TRAINED_CASE)
    report = Report()
    report.data["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    report.data["trained_like_kernel_sizes"] = kernel_sizes(trained)

    _sync_rows(report, {"flexnet7_init": init, "flexnet7_trained": trained}, x, y, dev)

    table = Table(f"Training step (fwd + loss + bwd + Adam), {dev.type}",
                  ["model", "variant", "batch", "ms", "IQR", "images/s", f"epoch s ({STEPS_PER_EPOCH} steps)",
                   f"{EPOCHS} epochs h", "vs float32", "first 2 steps s", "compile s"])
    report.tables.append(table)
    builders = {"flexnet7_init": lambda: (init, x, y), "flexnet7_trained": lambda: (trained, x, y),
                "ckcnn7": lambda: (ckcnn_from(spec), x, y),
                "flextcn_scifar10": lambda: (_tcn(folder, length, dev), xs, ys)}
    for name in args.models:
        model, xi, yi = builders[name]()
        stats = _time_model(report, table, name, model.to(dev), xi, yi, args)
        if name == "flexnet7_trained":
            _step_checks(report, stats, dev, args.quick)
    table.note = (f"epoch = {STEPS_PER_EPOCH} steps (CIFAR-10 at batch 64; a --quick run's batch is smaller, so its "
                  "epoch figures are not CIFAR-10's); direct = the same model with fft=False (the original's "
                  "algorithm); compile s = first two steps minus two timed steps.")

    _parity_rows(report, {"flexnet7_trained": (trained, x[:2].cpu()),
                          "flextcn_scifar10": (_tcn(folder, length, "cpu"), xs[:2].cpu())}, dev)
    return report

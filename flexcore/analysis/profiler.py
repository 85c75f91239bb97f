"""Profile training steps with ``torch.profiler``: a Chrome trace and tables of where time goes.

Standalone (``tools/analyze_model.py --tasks profile``)::

    result = profile_training(model, batches, loss_fn, optimizer, steps=10, output_dir="out")

Inside a training loop (the engine's profiler hook)::

    profiler = TrainingProfiler("out/profile", steps=10, model=model)
    profiler.start()
    for ...:
        run_step(); profiler.step()      # stops and writes its files after warmup + steps
        if profiler.done: ...

Both write ``trace.json`` (open in chrome://tracing or https://ui.perfetto.dev),
``top_ops.txt`` (ops by self time) and ``regions.txt`` (time per labelled region:
``forward``/``backward``/``optimizer``, each continuous conv, its kernel net and mask).
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from tabulate import tabulate
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from flexcore.layers import continuous_convs

__all__ = ["TrainingProfiler", "ProfileResult", "label_modules", "profile_training", "REGION_PREFIX"]

logger = logging.getLogger(__name__)

# Every label flexcore adds starts with this, so tables can tell regions from ops.
REGION_PREFIX = "flexcore/"


def _labelled_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Continuous convs and their kernel nets and masks, as ``(label, module)``."""
    found = []
    for name, conv in continuous_convs(model):
        found.append((name, conv))
        for child_name, child in conv.named_children():
            if child_name in ("kernel_net", "mask"):
                found.append((f"{name}.{child_name}", child))
    return found


@contextlib.contextmanager
def label_modules(model: nn.Module, modules: Optional[Sequence[Tuple[str, nn.Module]]] = None) -> Iterator[None]:
    """Wrap each module's forward in ``record_function("flexcore/<name>")`` while active.

    Uses forward hooks, so the layers' code stays untouched. By default labels every
    continuous conv, its ``kernel_net`` and its ``mask``.
    """
    modules = _labelled_modules(model) if modules is None else modules
    handles = []
    for name, module in modules:
        stack: List[record_function] = []

        def pre_hook(mod, args, _label=REGION_PREFIX + name, _stack=stack):
            region = record_function(_label)
            region.__enter__()
            _stack.append(region)

        def post_hook(mod, args, output, _stack=stack):
            if _stack:
                _stack.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class ProfileResult:
    """Aggregated profiler events with table helpers.

    Args:
        events: ``profiler.key_averages()``.
        steps: number of profiled (active) steps, to report per-step times.
        on_device: rank by device (CUDA) time instead of CPU time.
    """

    def __init__(self, events, steps: int, on_device: bool = False):
        self.events = list(events)
        self.steps = max(steps, 1)
        self.on_device = on_device

    def _self_time(self, event) -> float:
        return event.self_device_time_total if self.on_device else event.self_cpu_time_total

    def _total_time(self, event) -> float:
        return event.device_time_total if self.on_device else event.cpu_time_total

    def top_ops(self, limit: int = 25) -> List[Dict[str, float]]:
        """Ops (no labelled regions) by self time, as dicts of times in ms per step."""
        ops = [e for e in self.events if not getattr(e, "is_user_annotation", False)
               and not e.key.startswith(REGION_PREFIX) and not e.key.startswith("ProfilerStep")]
        total_self = sum(self._self_time(e) for e in ops) or 1.0
        ops.sort(key=self._self_time, reverse=True)
        return [
            {
                "op": e.key,
                "calls_per_step": e.count / self.steps,
                "self_ms_per_step": self._self_time(e) / 1e3 / self.steps,
                "self_percent": 100.0 * self._self_time(e) / total_self,
                "total_ms_per_step": self._total_time(e) / 1e3 / self.steps,
            }
            for e in ops[:limit]
        ]

    def regions(self) -> List[Dict[str, float]]:
        """Labelled regions (``record_function``), by total (inclusive) time."""
        found = [e for e in self.events if e.key.startswith(REGION_PREFIX)]
        found.sort(key=self._total_time, reverse=True)
        return [
            {
                "region": e.key[len(REGION_PREFIX):],
                "calls_per_step": e.count / self.steps,
                "total_ms_per_step": self._total_time(e) / 1e3 / self.steps,
            }
            for e in found
        ]

    def top_ops_table(self, limit: int = 25, tablefmt: str = "github") -> str:
        clock = "device" if self.on_device else "CPU"
        rows = [
            [r["op"], f"{r['calls_per_step']:g}", f"{r['self_ms_per_step']:.3f}", f"{r['self_percent']:.1f}%",
             f"{r['total_ms_per_step']:.3f}"]
            for r in self.top_ops(limit)
        ]
        head = ["op", "calls/step", f"self {clock} ms/step", "self %", f"total {clock} ms/step"]
        return tabulate(rows, headers=head, tablefmt=tablefmt, colalign=("left",) + ("right",) * 4)

    def regions_table(self, tablefmt: str = "github") -> str:
        clock = "device" if self.on_device else "CPU"
        rows = [[r["region"], f"{r['calls_per_step']:g}", f"{r['total_ms_per_step']:.3f}"] for r in self.regions()]
        return tabulate(rows, headers=["region", "calls/step", f"total {clock} ms/step"], tablefmt=tablefmt,
                        colalign=("left", "right", "right"))


class TrainingProfiler:
    """Profile ``steps`` training steps after ``warmup`` unrecorded ones, then write the results.

    Call :meth:`start` before the first step and :meth:`step` after each; after
    ``warmup + steps`` calls it stops by itself, writes its files into ``output_dir`` and
    sets :attr:`result`. :meth:`stop` ends early (writing what was recorded).

    Args:
        output_dir: folder for ``trace.json``, ``top_ops.txt``, ``regions.txt``.
        steps: steps to record.
        warmup: steps run under the profiler but not recorded (first-call overheads).
        model: if given, its continuous convs, kernel nets and masks are labelled.
        record_shapes: record input shapes (bigger trace, slower).
        row_limit: rows of the top-ops table.
    """

    def __init__(self, output_dir: str, steps: int = 10, warmup: int = 1, model: Optional[nn.Module] = None,
                 record_shapes: bool = False, row_limit: int = 25):
        if steps < 1:
            raise ValueError(f"profile steps must be >= 1, got {steps}")
        self.output_dir = output_dir
        self.steps, self.warmup = steps, max(warmup, 0)
        self.model = model
        self.record_shapes = record_shapes
        self.row_limit = row_limit
        self.on_device = torch.cuda.is_available()
        self.result: Optional[ProfileResult] = None
        self._count = 0
        self._profiler: Optional[profile] = None
        self._labels: Optional[contextlib.ExitStack] = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def start(self) -> "TrainingProfiler":
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.on_device else [])
        self._profiler = profile(
            activities=activities,
            schedule=schedule(wait=0, warmup=self.warmup, active=self.steps, repeat=1),
            record_shapes=self.record_shapes,
        )
        self._labels = contextlib.ExitStack()
        if self.model is not None:
            self._labels.enter_context(label_modules(self.model))
        self._profiler.__enter__()
        return self

    def step(self) -> None:
        """Mark the end of one training step."""
        if self._profiler is None or self.done:
            return
        self._profiler.step()
        self._count += 1
        if self._count >= self.warmup + self.steps:
            self.stop()

    def stop(self) -> Optional[ProfileResult]:
        """Stop profiling and write the trace and tables (idempotent)."""
        if self._profiler is None or self.done:
            return self.result
        prof, self._profiler = self._profiler, None
        prof.__exit__(None, None, None)
        if self._labels is not None:
            self._labels.close()
        recorded = max(self._count - self.warmup, 0)
        if recorded == 0:
            logger.warning("Profiler stopped before any recorded step (warmup %d); nothing written.", self.warmup)
            return None
        self.result = ProfileResult(prof.key_averages(), recorded, on_device=self.on_device)
        self._write(prof)
        return self.result

    def _write(self, prof: profile) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        prof.export_chrome_trace(os.path.join(self.output_dir, "trace.json"))
        result = self.result
        header = f"{result.steps} profiled training steps (after {self.warmup} warmup); times per step.\n"
        with open(os.path.join(self.output_dir, "top_ops.txt"), "w", encoding="utf-8") as f:
            f.write(header + result.top_ops_table(self.row_limit) + "\n")
        with open(os.path.join(self.output_dir, "regions.txt"), "w", encoding="utf-8") as f:
            f.write(header + result.regions_table() + "\n")
        logger.info("Profile of %d steps written to %s (trace.json, top_ops.txt, regions.txt)",
                    result.steps, self.output_dir)


def profile_training(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    output_dir: str,
    steps: int = 10,
    warmup: int = 1,
    device: Optional[torch.device] = None,
    row_limit: int = 25,
) -> ProfileResult:
    """Run ``warmup + steps`` training steps (forward, backward, optimizer step) under the profiler.

    Args:
        model: the model to train (put in train mode).
        batches: iterable of ``(inputs, targets)``; cycled if shorter than needed.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        optimizer: optimiser over ``model``'s parameters.
        output_dir: where ``trace.json``, ``top_ops.txt`` and ``regions.txt`` go.
        steps: recorded steps; warmup: unrecorded first steps.
        device: move batches there (default: the model's device).
    """
    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    model.train()
    profiler = TrainingProfiler(output_dir, steps=steps, warmup=warmup, model=model, row_limit=row_limit)
    cached: List = []
    iterator = iter(batches)
    profiler.start()
    try:
        for index in range(warmup + steps):
            try:
                batch = next(iterator)
                cached.append(batch)
            except StopIteration:
                if not cached:
                    raise ValueError("profile_training got no batches") from None
                batch = cached[index % len(cached)]
            inputs, targets = (t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)
            with record_function(REGION_PREFIX + "forward"):
                loss = loss_fn(model(inputs), targets)
            with record_function(REGION_PREFIX + "backward"):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            with record_function(REGION_PREFIX + "optimizer"):
                optimizer.step()
            profiler.step()
    finally:
        profiler.stop()
    return profiler.result

"""Training-loop hooks for what analysis knows: kernel sizes and dynamics, the kernel
report, the profiler and the FLOP count of the run's summary.

Registered in ``HOOKS``; the trainer looks them up by name (``HOOKS.get("KernelReport")``),
so the engine never imports this package. Their place in the hook order is documented in
:mod:`flexcore.engine.hooks`.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence

from tabulate import tabulate

from flexcore.analysis import kernel_dynamics
from flexcore.analysis.flops import count_flops
from flexcore.analysis.kernels import kernel_stats, write_kernel_report
from flexcore.analysis.profiler import TrainingProfiler
from flexcore.engine.hooks import PeriodicWriter, is_due
from flexcore.layers.traversal import continuous_convs, refresh_crops
from flexcore.registry import HOOKS
from flexcore.utils import comm
from flexcore.utils.hooks import HookBase, unwrap_model

__all__ = ["KernelSizeLogger", "TorchProfiler", "KernelReport", "FlopSummary"]

logger = logging.getLogger("flexcore")


@HOOKS.register()
class KernelSizeLogger(HookBase):
    """Puts each continuous conv's current (cropped) kernel size: ``kernel_size/<layer>[/<dim>]``.

    Logs a table of the sizes at the start and the end of training, and keeps each layer's
    size history (the iterations where it changed; checkpointed) for the kernel report.
    On the main process it also reports the kernels' dynamics
    (:mod:`flexcore.analysis.kernel_dynamics`): every ``period`` the masks' mean and width
    per dim, the energy outside each crop, the FFT/direct path counts and the kernel
    generation's time and share of a step; after the first step, each validation and the
    last step, kernel and mask images and histograms (when a writer keeps images:
    TensorBoard). Nothing runs per step.

    Args:
        period: iterations between measurements.
        dynamics: report the kernel dynamics (False: kernel sizes only).
        images: draw the images and histograms (with ``dynamics``).
        num_pairs: ``(out, in)`` kernel slices per layer in each image.
    """

    def __init__(self, period: int = 20, dynamics: bool = True, images: bool = True, num_pairs: int = 4):
        self.period = int(period)
        self.dynamics = bool(dynamics)
        self.images = bool(images)
        self.num_pairs = int(num_pairs)
        # layer -> [[iteration, *size], ...]: the first size and every change, for kernel_sizes.png
        self.history: Dict[str, List[List[int]]] = {}

    def _sizes(self) -> List[tuple]:
        rows = []
        model = unwrap_model(self.trainer.model)
        refresh_crops(model)  # every crop from one device read (the next step then reads none)
        for name, conv in continuous_convs(model):
            try:
                size = conv.kernel_size()
            except RuntimeError:  # horizon 'same'/'full': the first forward fixes the grid
                continue
            rows.append((name, tuple(int(s) for s in size) if isinstance(size, (tuple, list)) else (int(size),)))
        return rows

    def _record(self, rows: Sequence[tuple], iteration: int) -> None:
        for name, size in rows:
            points = self.history.setdefault(name, [])
            if not points or points[-1][1:] != list(size):
                points.append([iteration, *size])

    def _put(self) -> None:
        storage = self.trainer.storage
        rows = self._sizes()
        self._record(rows, self.trainer.iter)
        for name, size in rows:
            if len(size) == 1:
                storage.put_scalar(f"kernel_size/{name}", size[0], smoothing_hint=False)
            else:
                for d, s in enumerate(size):
                    storage.put_scalar(f"kernel_size/{name}/{d}", s, smoothing_hint=False)

    def _log_table(self, when: str) -> None:
        rows = self._sizes()
        if rows:
            table = tabulate([(n, "x".join(map(str, s))) for n, s in rows], headers=["continuous conv", "kernel size"],
                             tablefmt="github")
            logger.info("Kernel sizes %s:\n%s", when, table)

    def _validated_now(self) -> bool:
        result = getattr(self.trainer, "validation_result", None)
        return bool(result) and result.get("iteration") == self.trainer.iter

    def _images_kept(self) -> bool:
        """Whether a writer persists images (TensorBoard); drawing them is wasted otherwise."""
        return any(getattr(writer, "writes_images", False) for hook in self.trainer.hooks
                   if isinstance(hook, PeriodicWriter) for writer in hook.writers)

    def _put_dynamics(self, scalars: bool) -> None:
        model = unwrap_model(self.trainer.model)
        it = self.trainer.iter
        if scalars:
            kernel_dynamics.put_kernel_scalars(model, self.trainer.storage)
        moment = it == 0 or it + 1 == self.trainer.max_iter or self._validated_now()
        if self.images and moment and self._images_kept():
            kernel_dynamics.put_kernel_images(model, self.trainer.storage, num_pairs=self.num_pairs)

    def before_train(self) -> None:
        self._log_table("at the start")

    def after_step(self) -> None:
        due = is_due(self.trainer.iter, self.period, self.trainer.max_iter)
        if due:
            self._put()
        elif self.trainer.iter == self.trainer.start_iter:  # the size the first step left
            self._record(self._sizes(), self.trainer.iter)
        if self.dynamics and comm.is_main_process():
            try:
                self._put_dynamics(scalars=due)
            except Exception:  # noqa: BLE001 - a diagnostic must not stop training
                logger.exception("Reporting the kernel dynamics at iteration %d failed; turning it off",
                                 self.trainer.iter)
                self.dynamics = False

    def after_train(self) -> None:
        if self.trainer.completed:
            self._log_table("at the end")

    def state_dict(self) -> Dict[str, Any]:
        return {"history": self.history} if self.history else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.history = {name: [list(p) for p in points] for name, points in state.get("history", {}).items()}


@HOOKS.register()
class TorchProfiler(HookBase):
    """Profiles ``num_steps`` steps with ``torch.profiler`` (:class:`TrainingProfiler`).

    Outputs in ``output_dir`` (main process): ``trace.json`` (chrome://tracing, Perfetto),
    ``top_ops.txt`` (ops by self time per step, also logged) and ``regions.txt`` (time per
    labelled region: each continuous conv, its kernel net and mask).

    Args:
        output_dir: folder for the outputs.
        warmup_steps: steps after the run's start run under the profiler but not recorded.
        num_steps: profiled steps.
        top: rows of the table.
    """

    def __init__(self, output_dir: str, warmup_steps: int = 2, num_steps: int = 5, top: int = 25):
        self.output_dir = output_dir
        self.warmup_steps = int(warmup_steps)
        self.num_steps = int(num_steps)
        self.top = int(top)
        self._profiler = None
        self.table = ""

    def before_train(self) -> None:
        if not comm.is_main_process():
            return
        self._profiler = TrainingProfiler(
            self.output_dir, steps=self.num_steps, warmup=self.warmup_steps,
            model=unwrap_model(self.trainer.model), row_limit=self.top,
        ).start()

    def after_step(self) -> None:
        if self._profiler is not None and not self._profiler.done:
            self._profiler.step()
            if self._profiler.done:
                self._finish()

    def after_train(self) -> None:
        if self._profiler is not None and not self._profiler.done:
            self._profiler.stop()
            self._finish()

    def _finish(self) -> None:
        result = self._profiler.result
        if result is None:
            return
        self.table = result.top_ops_table(self.top)
        logger.info("Profile of %d steps (top %d ops by self time):\n%s\nRegions:\n%s", result.steps, self.top,
                    self.table, result.regions_table())
        logger.info("Profiler trace: %s", os.path.join(self.output_dir, "trace.json"))


@HOOKS.register()
class KernelReport(HookBase):
    """At the end of training, write the kernel report (:func:`write_kernel_report`).

    ``<output_dir>/kernels/``: kernel sizes and mask extents per continuous conv (table and
    JSON at the first step and at the end), the sizes over training as curves (from
    ``KernelSizeLogger``'s history), kernel and mask images. Models without continuous
    convs get only the (empty) table.

    Args:
        output_dir: the run's output dir (default: the trainer's).
        num_slices: ``(out, in)`` slices per layer in ``kernels.png``.
    """

    def __init__(self, output_dir: Optional[str] = None, num_slices: int = 4):
        self.output_dir = output_dir
        self.num_slices = num_slices
        self._start: Dict[str, Any] = {}

    def after_step(self) -> None:
        if not self._start and comm.is_main_process():  # the first step fixed every grid: sizes at the start
            self._start = {f"iter {self.trainer.iter + 1}": kernel_stats(unwrap_model(self.trainer.model))}

    def after_train(self) -> None:
        if not comm.is_main_process() or not self._start:
            return
        output_dir = self.output_dir or self.trainer.output_dir
        sizes = next((h for h in self.trainer.hooks if isinstance(h, KernelSizeLogger)), None)
        try:  # `iter` counts the iterations done once training ended (max_iter when completed)
            write_kernel_report(unwrap_model(self.trainer.model), output_dir, label=f"iter {self.trainer.iter}",
                                num_slices=self.num_slices, extra_stats=self._start,
                                size_history=sizes.history if sizes is not None else None,
                                last_iteration=self.trainer.iter - 1)
        except Exception:  # noqa: BLE001 - a report must not hide the training outcome
            logger.exception("Writing the kernel report to %s failed", output_dir)


@HOOKS.register()
class FlopSummary(HookBase):
    """After a completed run, inference FLOPs of one training sample (fvcore's convention: a
    multiply-add counts 1) go to the trainer's ``summary_extras`` as ``flops_per_sample``.

    A model that cannot be counted logs a warning and leaves the number out: a missing
    count never fails a finished run.
    """

    def after_train(self) -> None:
        trainer = self.trainer
        if not trainer.completed or not comm.is_main_process():
            return
        sample = trainer.train_set[0][0].unsqueeze(0).to(trainer.device)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
                flops = int(count_flops(unwrap_model(trainer.model), sample))
        except Exception as exc:  # noqa: BLE001 - a missing count must not fail a finished run
            logger.warning("FLOPs not counted (%s: %s); the summary leaves them out.", type(exc).__name__, exc)
            return
        trainer.summary_extras["flops_per_sample"] = flops

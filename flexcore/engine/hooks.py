"""Hooks registered in ``HOOKS``: everything around the training step.

The trainer (:class:`flexcore.engine.Trainer`) registers them in this order, which
matters because each phase runs the hooks in sequence. Hooks that need a lower
package's knowledge are defined there and looked up in ``HOOKS`` by name (marked
with their module); this module holds the generic ones.

1. ``IterationTimer``      times each step (first, so it brackets the others' ``before_step``)
2. ``RefreshCrops``        (layers) every FlexConv's crop from one device read, before the step
3. ``TorchProfiler``       (analysis) only with ``--profile N``: traces N steps
4. ``EvalHook``            validation every ``eval_period``; best checkpoint; final test
5. ``LRScheduler``         logs the rate used by this step, then steps the schedule
                           (after evaluation, so ``Plateau`` sees this evaluation)
6. ``KernelSizeLogger``    (analysis) each continuous conv's current (cropped) kernel size,
                           mask parameters and more; kernel and mask images after each validation
7. user hooks              ``Trainer.extra_hooks``
8. ``PeriodicWriter``      metrics.json, TensorBoard, console line (main process); also at
                           every checkpoint iteration
9. ``Progress``            a tqdm bar when stdout is a terminal (main process)
10. ``KernelReport``       (analysis) kernel sizes, masks and kernels as tables and PNGs at the end (main)
11. ``FlopSummary``        (analysis) inference FLOPs per sample for the run's summary (main)
12. ``PeriodicCheckpointer`` last: after every state change, so a checkpoint holds this
                           step's schedule and best metric, and after this step's metrics
                           are on disk, so a run killed at any moment resumes with a
                           metrics.json that misses nothing; ``model_final`` at the end
"""
from __future__ import annotations

import copy
import logging
import os
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch

from flexcore.checkpoint import CheckpointError
from flexcore.engine.evaluation import Task, evaluate
from flexcore.engine.train_loop import HookBase, unwrap_model
from flexcore.registry import HOOKS
from flexcore.utils.events import EventWriter, peak_gpu_memory_mib

__all__ = [
    "is_due",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "PeriodicWriter",
    "Progress",
]

logger = logging.getLogger("flexcore")


def is_due(iteration: int, period: int, max_iter: int) -> bool:
    """Whether a periodic action runs after ``iteration``: every ``period`` steps and after the last."""
    last = iteration + 1 == max_iter
    return last or (period > 0 and (iteration + 1) % period == 0)


@HOOKS.register()
class IterationTimer(HookBase):
    """Puts ``time`` (seconds per step) and sums pure training time for throughput.

    Args:
        warmup_iter: first steps excluded from the totals (startup, lazy init).
    """

    def __init__(self, warmup_iter: int = 3):
        self.warmup_iter = warmup_iter
        self.step_time = 0.0  # summed over counted steps
        self.counted_steps = 0
        self._start = 0.0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._start = time.perf_counter()

    def after_step(self) -> None:
        elapsed = time.perf_counter() - self._start
        if self.trainer.iter - self.trainer.start_iter >= self.warmup_iter:
            self.step_time += elapsed
            self.counted_steps += 1
        self.trainer.storage.put_scalar("time", elapsed)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        steps = self.trainer.iter - self.trainer.start_iter
        if steps > 0:
            per_step = self.step_time / self.counted_steps if self.counted_steps else float("nan")
            logger.info("Trained %d iterations in %.1f s (%.4f s/it in the step itself, hooks and evaluation "
                        "included in the total)", steps, total, per_step)


@HOOKS.register()
class LRScheduler(HookBase):
    """Logs ``lr`` (and ``lr/<group>`` for the other named groups), then steps the schedule.

    A schedule with ``step_metric`` (``Plateau``) also receives the validation metric
    whenever the ``EvalHook`` evaluated at this iteration.

    Args:
        optimizer: the optimiser whose rates are logged.
        scheduler: the schedule (stepped once per iteration).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any):
        self.optimizer = optimizer
        self.scheduler = scheduler

    def after_step(self) -> None:
        storage = self.trainer.storage
        groups = self.optimizer.param_groups
        main = next((g for g in groups if g.get("name") == "default"), max(groups, key=lambda g: len(g["params"])))
        storage.put_scalar("lr", main["lr"], smoothing_hint=False)
        for group in groups:
            if group is not main and group.get("name") and group.get("lr_factor", 1.0) != 1.0:
                storage.put_scalar(f"lr/{group['name']}", group["lr"], smoothing_hint=False)
        result = getattr(self.trainer, "validation_result", None)
        if hasattr(self.scheduler, "step_metric") and result and result["iteration"] == self.trainer.iter:
            self.scheduler.step_metric(result["value"], result["mode"])
        self.scheduler.step()


@HOOKS.register()
class PeriodicCheckpointer(HookBase):
    """Saves ``model_<iter>.pth`` every ``period`` iterations and ``model_final.pth`` on completion.

    Nothing is saved after a failed run (a NaN loss, an exception): the last good
    checkpoint stays what ``last_checkpoint`` names.

    Args:
        checkpointer: a :class:`flexcore.checkpoint.Checkpointer` (holding model, optimiser,
            schedule and trainer state).
        period: iterations between checkpoints (0: only the final one).
        max_to_keep: periodic checkpoints kept (older ones are deleted after a newer one
            is complete), counting those that earlier sessions of a resumed run left in the
            folder; None keeps all.
        file_prefix: file name prefix.
    """

    def __init__(self, checkpointer: Any, period: int, max_to_keep: Optional[int] = None, file_prefix: str = "model"):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_to_keep = max_to_keep
        self.file_prefix = file_prefix
        self._kept: List[str] = []

    def before_train(self) -> None:
        # Oldest first: what earlier sessions left, then what this one saves.
        self._kept = self.checkpointer.periodic_checkpoints(self.file_prefix) if self.checkpointer.save_to_disk else []

    def after_step(self) -> None:
        it = self.trainer.iter
        if self.period > 0 and (it + 1) % self.period == 0 and it + 1 < self.trainer.max_iter:
            path = self.checkpointer.save(f"{self.file_prefix}_{it:07d}", iteration=it)
            if path and self.max_to_keep:
                if path in self._kept:  # redone after a resume: it is the newest again
                    self._kept.remove(path)
                self._kept.append(path)
                while len(self._kept) > self.max_to_keep:
                    old = self._kept.pop(0)
                    if self.checkpointer.path_manager.exists(old):
                        self.checkpointer.path_manager.rm(old)

    def after_train(self) -> None:
        if self.trainer.completed and self.trainer.max_iter > self.trainer.start_iter:
            path = self.checkpointer.save(f"{self.file_prefix}_final", iteration=self.trainer.max_iter - 1)
            if path:
                logger.info("Saved the final model: %s", path)


@HOOKS.register()
class EvalHook(HookBase):
    """Validation every ``period`` iterations (and after the last), best-checkpoint tracking, final test.

    After each validation it puts ``val/<metric>`` scalars, logs a line, and when the
    selection metric improves (accuracy up, or equal with a lower loss — the original's
    rule; for regression the loss down) saves ``model_best.pth`` (model + ``best`` entry,
    not tagged as last). After a completed run it tests the final model and, if another
    iteration was best, the best model, putting ``test/...`` and ``test_best/...``. A
    resumed run reads the best model from ``model_best.pth``; if that file is missing or
    unreadable, the final model is still tested and the failure is listed in ``errors``
    (the trainer reports it in the summary and the exit status).

    Args:
        period: iterations between validations (0: only after the last iteration).
        task: how outputs are scored (:func:`flexcore.engine.evaluation.build_task`).
        val_loader: the selection split's loader (None: select on the test split — the
            original's image experiments did that).
        test_loader: the test split's loader (None: no final test).
        checkpointer: saves ``model_best`` (None: nothing saved).
        iters_per_epoch: to report epochs in the log lines.
    """

    def __init__(self, period: int, task: Task, val_loader: Optional[Iterable], test_loader: Optional[Iterable] = None,
                 checkpointer: Any = None, iters_per_epoch: Optional[int] = None):
        if val_loader is None and test_loader is None:
            raise ValueError("EvalHook needs a validation or a test loader")
        self.period = int(period)
        self.task = task
        self.select_on_test = val_loader is None
        self.val_loader = test_loader if val_loader is None else val_loader
        self.test_loader = test_loader
        self.checkpointer = checkpointer
        self.iters_per_epoch = iters_per_epoch
        self.best: Dict[str, Any] = {}
        self.results: Dict[str, Dict[str, float]] = {}
        self.errors: List[str] = []  # results that could not be produced, each said in a sentence
        self._best_state: Optional[Dict[str, torch.Tensor]] = None

    @property
    def split(self) -> str:
        return "test" if self.select_on_test else "val"

    def _epoch(self, it: int) -> Optional[float]:
        return round((it + 1) / self.iters_per_epoch, 2) if self.iters_per_epoch else None

    def _improved(self, result: Dict[str, float]) -> bool:
        if not self.best:
            return True
        value, best = result[self.task.metric], self.best[self.task.metric]
        if self.task.mode == "max":
            return value > best or (value == best and result["loss"] <= self.best["loss"])
        return value < best

    def _validate(self) -> None:
        it = self.trainer.iter
        result = evaluate(self.trainer.model, self.val_loader, self.task)
        storage = self.trainer.storage
        for key, value in result.items():
            if key not in ("samples", "time"):
                storage.put_scalar(f"{self.split}/{key}", value, smoothing_hint=False)
        shown = "  ".join(f"{k}: {v:.4f}" for k, v in result.items() if k not in ("samples", "time"))
        epoch = self._epoch(it)
        where = f"epoch {epoch:g} (iter {it + 1})" if epoch is not None else f"iter {it + 1}"
        improved = self._improved(result)
        logger.info("Validation on %s after %s: %s  [%d samples, %.1f s]%s", self.split, where, shown,
                    int(result["samples"]), result["time"], "  *best*" if improved else "")
        self.trainer.validation_result = {"iteration": it, "value": result[self.task.metric], "mode": self.task.mode}
        self.results[self.split] = result
        if improved:
            self.best = {k: v for k, v in result.items() if k not in ("samples", "time")}
            self.best.update(iteration=it, epoch=epoch if epoch is not None else -1.0)
            model = unwrap_model(self.trainer.model)
            # On the CPU: the copy must not cost accelerator memory.
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if self.checkpointer is not None:
                self.checkpointer.save("model_best", tag_last=False, include_checkpointables=False, best=dict(self.best))

    def after_step(self) -> None:
        if is_due(self.trainer.iter, self.period, self.trainer.max_iter):
            self._validate()

    def _test(self, prefix: str, model: torch.nn.Module) -> Dict[str, float]:
        result = evaluate(model, self.test_loader, self.task)
        for key, value in result.items():
            if key not in ("samples", "time"):
                self.trainer.storage.put_scalar(f"{prefix}/{key}", value, smoothing_hint=False)
        logger.info("%s: %s", "Test of the final model" if prefix == "test" else "Test of the best model",
                    "  ".join(f"{k}: {v:.4f}" for k, v in result.items() if k not in ("samples", "time")))
        self.results[prefix] = result
        return result

    def _untested_best(self, reason: str) -> None:
        message = f"The best model (best_iteration {self.best.get('iteration')}) was not tested: {reason}"
        logger.error("%s", message)
        self.errors.append(message)

    def _best_model(self) -> Optional[torch.nn.Module]:
        state = self._best_state
        if state is None and self.checkpointer is not None:  # resumed run: the best lives on disk
            path = os.path.join(self.checkpointer.save_dir, "model_best.pth")
            if not self.checkpointer.path_manager.exists(path):
                self._untested_best(f"{path} is missing.")
                return None
            try:
                state = self.checkpointer._load_file(path)["model"]  # noqa: SLF001 - same safe loader
            except CheckpointError as exc:
                self._untested_best(str(exc))
                return None
        if state is None:
            logger.warning("No best model in memory or on disk: testing the final model only.")
            return None
        model = copy.deepcopy(unwrap_model(self.trainer.model))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            self._untested_best(f"model_best.pth does not fit the model ({str(exc).splitlines()[0]}).")
            return None
        return model

    def after_train(self) -> None:
        if not self.trainer.completed or self.test_loader is None:
            return
        if self.select_on_test:  # validations ran on the test split: the last is the final model's test
            self.results["test_best"] = {k: v for k, v in self.best.items() if k not in ("iteration", "epoch")}
            return
        self._test("test", self.trainer.model)
        last = self.trainer.max_iter - 1
        if self.best and self.best["iteration"] == last:
            self.results["test_best"] = dict(self.results["test"])
            for key, value in self.results["test"].items():
                if key not in ("samples", "time"):
                    self.trainer.storage.put_scalar(f"test_best/{key}", value, smoothing_hint=False)
        else:
            best_model = self._best_model()
            if best_model is not None:
                self._test("test_best", best_model)

    def summary(self) -> Dict[str, Any]:
        """The run summary's evaluation entries: best selection metric and when, tests, errors."""
        metric, out = self.task.metric, {}
        if self.best:
            out.update({f"best_{self.split}_{metric}": self.best[metric], "best_iteration": self.best["iteration"],
                        "best_epoch": self.best["epoch"]})
        for key, label in (("test_best", "test_{}_best_model"), ("test", "test_{}_final_model")):
            result = self.results.get(key)
            if result and metric in result:
                out[label.format(metric)] = result[metric]
                if "top5" in result:
                    out[label.format("top5")] = result["top5"]
        if self.errors:
            out["errors"] = list(self.errors)
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best = dict(state.get("best", {}))


@HOOKS.register()
class PeriodicWriter(HookBase):
    """Calls each writer every ``period`` iterations, after the last, and at the end.

    On a GPU it first puts ``peak_memory_mib`` (the process's peak tensor memory so far).

    Args:
        writers: :class:`flexcore.utils.events.EventWriter` instances.
        period: iterations between writes.
        checkpoint_period: also write after these iterations (the checkpointer's period), so
            that no checkpoint is ahead of what the writers wrote; 0: never.
    """

    def __init__(self, writers: Sequence[EventWriter], period: int = 20, checkpoint_period: int = 0):
        self.writers = list(writers)
        self.period = int(period)
        self.checkpoint_period = int(checkpoint_period)

    def after_step(self) -> None:
        it = self.trainer.iter
        at_checkpoint = self.checkpoint_period > 0 and (it + 1) % self.checkpoint_period == 0
        if at_checkpoint or is_due(it, self.period, self.trainer.max_iter):
            memory = peak_gpu_memory_mib()
            if memory is not None:
                self.trainer.storage.put_scalar("peak_memory_mib", memory, smoothing_hint=False)
            for writer in self.writers:
                writer.write()

    def after_train(self) -> None:
        for writer in self.writers:
            writer.write()  # the final test's scalars
            writer.close()


@HOOKS.register()
class Progress(HookBase):
    """A tqdm progress bar over the iterations when stdout is a terminal.

    In a terminal, log lines are routed above the bar; elsewhere (files, SLURM logs)
    this hook stays silent and the console metric line of ``PeriodicWriter`` reports
    progress periodically instead.

    Args:
        enabled: force the bar on or off (None: on when stdout is a TTY).
    """

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = sys.stdout.isatty() if enabled is None else bool(enabled)
        self._bar = None
        self._redirect = None

    def before_train(self) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = logging_redirect_tqdm(loggers=[logger])
        self._redirect.__enter__()
        self._bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter, unit="it", dynamic_ncols=True)

    def after_step(self) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if self.trainer.iter % 10 == 0 or self.trainer.iter + 1 == self.trainer.max_iter:
            latest = self.trainer.storage.latest()
            shown = {k: f"{latest[k][0]:.4g}" for k in ("total_loss", "loss", "lr", "val/accuracy") if k in latest}
            self._bar.set_postfix(shown, refresh=False)

    def after_train(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

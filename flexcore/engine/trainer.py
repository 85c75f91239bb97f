"""The gin-configured ``Trainer``: builds data, model, solver, hooks from the config and trains.

    trainer = Trainer(output_dir)            # everything else comes from gin
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()                # or trainer.evaluate_only(weights)
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import gin
import torch
import torch.nn as nn
from tabulate import tabulate

from flexcore.checkpoint import CheckpointError, Checkpointer, get_rng_state, set_rng_state
from flexcore.data.base import build_dataset
from flexcore.data.samplers import TrainingBatchSampler, build_test_loader, build_train_loader, per_rank_batch_size
from flexcore.engine import hooks as H
from flexcore.engine.accelerate import amp_dtype, compile_model, to_channels_last
from flexcore.engine.evaluation import build_task, evaluate
from flexcore.engine.run_dir import check_resume, finished_summary, raise_recorded_errors, remove_stale_temp_files
from flexcore.engine.trainer_config import (
    Checkpoints, Data, Outputs, Runtime, Schedule, Solver, assemble_config, build_regularizers, resolve_device,
)
from flexcore.engine.train_loop import HookBase, NonFiniteLossError, SimpleTrainer, TrainerBase, unwrap_model
from flexcore.layers.fft_cost import fft_autotune_scope
from flexcore.modeling.build import build_model as build_network
from flexcore.registry import HOOKS, LR_SCHEDULES, OPTIMIZERS
from flexcore.utils import comm
from flexcore.utils.env import seed_all_rng, torch_settings
from flexcore.utils.events import CommonMetricPrinter, JSONWriter, TensorboardWriter
from flexcore.utils.faults import cut_write
from flexcore.utils.file_io import atomic_open, path_manager
from flexcore.utils.parameters import count_parameters

__all__ = ["Trainer", "experiment"]

logger = logging.getLogger("flexcore")


@gin.configurable(module="engine")
class Trainer(TrainerBase):
    """Train and evaluate one experiment; every setting but ``output_dir`` comes from gin.

    The settings come in six groups (:mod:`flexcore.engine.trainer_config`), each a gin
    configurable: ``Data`` (dataset, batches, splits), ``Solver`` (lr, optimizer, lr
    schedule, regularizers, clipping), ``Schedule`` (length and periods), ``Runtime``
    (device, seed, threads, precision, compile), ``Checkpoints`` (initial weights, safe
    loading, how many to keep) and ``Outputs`` (TensorBoard, kernel report, profiling).

    Args:
        output_dir: where checkpoints, metrics and logs go.
        data, solver, schedule, runtime, checkpoints, outputs: a group to use instead of the
            one gin builds.
        extra_hooks: ``HOOKS`` factories ``() -> HookBase`` run after the built-in ones.
        **overrides: any group's field by name, replacing its configured value
            (``Trainer(out, max_iter=3, fake_data=True)``).

    Construction only assembles: a subclass overrides :meth:`build_datasets`,
    :meth:`build_model`, :meth:`build_solver` or :meth:`build_hooks` (docs/training.md).
    Threads, determinism and FFT autotune hold only within :meth:`process_settings`.
    """

    def __init__(self, output_dir: str, data: Optional[Data] = None, solver: Optional[Solver] = None,
                 schedule: Optional[Schedule] = None, runtime: Optional[Runtime] = None,
                 checkpoints: Optional[Checkpoints] = None, outputs: Optional[Outputs] = None,
                 extra_hooks: Sequence[Callable[[], HookBase]] = (), **overrides: Any):
        super().__init__()
        groups = dict(data=data, solver=solver, schedule=schedule, runtime=runtime, checkpoints=checkpoints,
                      outputs=outputs)
        self.cfg = assemble_config(groups, overrides)
        self.extra_hooks = list(extra_hooks)
        self.output_dir = output_dir
        if comm.is_main_process():
            path_manager.mkdirs(output_dir)
        self._init_run_state()
        with self.process_settings():
            self.seed = seed_all_rng(self.cfg.runtime.seed)
            self.train_set, self.val_set, self.test_set = self.build_datasets()
            self.metadata = self.train_set.metadata
            self.task = build_task(self.metadata)
            self.model = self.build_model()  # every rank builds the same model (DDP also broadcasts rank 0's)
            self._plan_iterations()
            self.optimizer, self.scheduler, self.regularizers = self.build_solver(unwrap_model(self.model))
            self._trainer = self._build_step()
            self.checkpointer = Checkpointer(
                unwrap_model(self.model), output_dir, weights_only=self.cfg.checkpoints.weights_only,
                optimizer=self.optimizer, scheduler=self.scheduler, trainer=self,
            )
            self.register_hooks(self.build_hooks())

    def _init_run_state(self) -> None:
        self.start_iter = 0
        self._earlier_wall_s = 0.0  # training time of earlier sessions of this run (from the checkpoint)
        self._saved_max_iter: Optional[int] = None  # the run length a resumed checkpoint was saved with
        self._session_start: Optional[float] = None
        self.validation_result: Optional[Dict[str, Any]] = None
        self.results: Dict[str, Any] = {}
        self.summary_extras: Dict[str, Any] = {}  # hooks add entries to summary.json here

    @contextlib.contextmanager
    def process_settings(self) -> Iterator[None]:
        """torch threads, deterministic kernels and FFT autotune (timed picks, training and
        inference, only if asked: they could differ between runs in float bits) as configured,
        restored on exit. Construction, :meth:`train` and evaluation run inside it."""
        r = self.cfg.runtime
        with torch_settings(r.num_threads, r.deterministic), fft_autotune_scope(r.fft_autotune, r.fft_autotune):
            yield

    # -- construction: override one of these in a subclass ------------------------------------
    def build_datasets(self) -> Tuple[Any, Optional[Any], Optional[Any]]:
        """``(train, val, test)`` datasets (val/test None when their split is off); gin scope per split."""
        d = self.cfg.data
        return (self._build_split("train"), self._build_split(d.val_split) if d.val_split else None,
                self._build_split(d.test_split) if d.test_split else None)

    def _build_split(self, split: str):
        with gin.config_scope(split):
            d = self.cfg.data
            dataset = build_dataset(name=d.dataset, split=split, fake=d.fake_data, **dict(d.dataset_options or {}))
        if not hasattr(dataset, "metadata"):
            raise TypeError(f"Dataset {d.dataset!r} ({split}) has no .metadata; see docs/contracts.md")
        return dataset

    def build_model(self) -> nn.Module:
        """The network for ``self.metadata`` on ``self.device``: compiled and DDP-wrapped as configured."""
        o = self.cfg.runtime
        model = build_network(self.metadata)
        self.device = resolve_device(o.device)
        model.to(self.device)
        amp_dtype(o.amp, self.device)  # a bad value fails here, before any data is touched
        if o.channels_last:
            to_channels_last(model)
        self.num_parameters = count_parameters(model)
        logger.info("Model: %s with %s trainable parameters", type(model).__name__, f"{self.num_parameters:,}")
        # Different dropout/augmentation streams per rank from here on.
        seed_all_rng(self.seed + comm.get_rank())
        if o.compile:  # before DDP wraps it, so that DDP's hooks see the compiled module
            compile_model(model, mode=o.compile_mode, backend=o.compile_backend)
        if comm.get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    def _plan_iterations(self) -> None:
        """Run length and periods in iterations, from the training set's size."""
        d, o = self.cfg.data, self.cfg.schedule
        sampler = TrainingBatchSampler(len(self.train_set), per_rank_batch_size(d.batch_size), drop_last=d.drop_last)
        self.iters_per_epoch = sampler.iters_per_epoch
        self.max_iter = o.max_iter or o.epochs * self.iters_per_epoch
        unit = self.iters_per_epoch if o.period_unit == "epoch" else 1
        self.eval_period = o.eval_period * unit
        self.checkpoint_period = o.checkpoint_period * unit
        logger.info(
            "Data: %s (%d train / %s val / %s test samples); global batch %d = %d per process x %d; "
            "%d iterations per epoch, %d iterations (%.4g epochs)",
            d.dataset, len(self.train_set), len(self.val_set) if self.val_set is not None else "no",
            len(self.test_set) if self.test_set is not None else "no", d.batch_size,
            per_rank_batch_size(d.batch_size), comm.get_world_size(), self.iters_per_epoch, self.max_iter,
            self.max_iter / self.iters_per_epoch,
        )

    def build_solver(self, model: nn.Module) -> Tuple[torch.optim.Optimizer, Any, Dict[str, Callable]]:
        """``(optimizer, lr schedule, regularizers)`` for the (unwrapped) ``model``.

        Defaults are looked up by name so that their gin bindings (``Adam.betas = ...``) apply.
        """
        o = self.cfg.solver
        optimizer = (o.optimizer or OPTIMIZERS.get("Adam"))(o.param_groups(model), lr=o.lr)
        schedule = (o.lr_schedule or LR_SCHEDULES.get("Constant"))(
            optimizer, max_iter=self.max_iter, iters_per_epoch=self.iters_per_epoch)
        return optimizer, schedule, build_regularizers(o.regularizers)

    def _build_step(self) -> SimpleTrainer:
        o, r = self.cfg.solver, self.cfg.runtime
        return SimpleTrainer(
            self.model, None, self.optimizer, self.task.loss, self.regularizers, grad_clip=o.grad_clip,
            grad_clip_type=o.grad_clip_type, device=self.device, batch_metrics=self.task.train_batch_metrics,
            amp=r.amp, channels_last=r.channels_last, compile_fallback=r.compile_fallback,
        )

    def eval_loader(self, dataset):
        """A loader over ``dataset`` for evaluation (the eval batch, in order); None for None."""
        return None if dataset is None else build_test_loader(dataset, self.cfg.data.eval_batch, self.cfg.data.num_workers)

    def build_hooks(self) -> List[Optional[HookBase]]:
        """The default hooks in their documented order (see :mod:`flexcore.engine.hooks`).

        Hooks that need the layers' or analysis' knowledge are looked up in ``HOOKS`` by
        name (their gin bindings apply, e.g. ``KernelSizeLogger.images = False``). A
        profiling run (``profile_steps``) keeps only the timer, the crop refresh, the
        profiler and the schedule: it writes no checkpoints or metrics, so its output dir
        stays reusable.
        """
        hooks: List[Optional[HookBase]] = [H.IterationTimer(), HOOKS.get("RefreshCrops")()]
        self.eval_hook = None
        log_period, profile_steps = self.cfg.schedule.log_period, self.cfg.outputs.profile_steps
        if profile_steps:
            hooks.append(HOOKS.get("TorchProfiler")(os.path.join(self.output_dir, "profile"), warmup_steps=2,
                                                    num_steps=profile_steps))
            return hooks + [H.LRScheduler(self.optimizer, self.scheduler)]
        if self.val_set is not None or self.test_set is not None:
            self.eval_hook = H.EvalHook(
                self.eval_period, self.task, self.eval_loader(self.val_set), self.eval_loader(self.test_set),
                checkpointer=self.checkpointer, iters_per_epoch=self.iters_per_epoch,
            )
            hooks.append(self.eval_hook)
        hooks += [H.LRScheduler(self.optimizer, self.scheduler), HOOKS.get("KernelSizeLogger")(period=log_period)]
        hooks += [factory() for factory in self.extra_hooks]
        main = comm.is_main_process()
        if main:
            # Writers are attached in train(): they need the start iteration (resume).
            hooks.append(H.PeriodicWriter([], period=log_period, checkpoint_period=self.checkpoint_period))
            hooks.append(H.Progress())
            if self.cfg.outputs.kernel_report:
                hooks.append(HOOKS.get("KernelReport")())
            hooks.append(HOOKS.get("FlopSummary")())
        # Last: a checkpoint is never ahead of metrics.json (a run killed between the two
        # would resume past a step whose metrics line was never written).
        hooks.append(H.PeriodicCheckpointer(self.checkpointer, self.checkpoint_period, max_to_keep=self.cfg.checkpoints.max_to_keep))
        return hooks

    def _open_writers(self) -> None:
        writer_hook = next((h for h in self._hooks if isinstance(h, H.PeriodicWriter)), None)
        if writer_hook is None:
            return
        start, log_period = self.start_iter, self.cfg.schedule.log_period
        writers = [
            CommonMetricPrinter(self.max_iter, window_size=log_period, iters_per_epoch=self.iters_per_epoch,
                                keys=("train/accuracy",)),
            JSONWriter(os.path.join(self.output_dir, "metrics.json"), window_size=log_period, start_iter=start,
                       iters_per_epoch=self.iters_per_epoch),
        ]
        if self.cfg.outputs.tensorboard:
            writers.append(TensorboardWriter(self.output_dir, window_size=log_period, start_iter=start))
        writer_hook.writers = writers

    # -- checkpoint state ------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state["rng"] = get_rng_state()
        session = time.perf_counter() - self._session_start if self._session_start is not None else 0.0
        state["wall_time_s"] = self._earlier_wall_s + session
        state["max_iter"] = self.max_iter
        if self._trainer.grad_scaler is not None:  # fp16: the loss scale it has settled on
            state["grad_scaler"] = self._trainer.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "rng" in state:
            set_rng_state(state["rng"])
        self._earlier_wall_s = float(state.get("wall_time_s", 0.0))
        self._saved_max_iter = state.get("max_iter")
        scaler = self._trainer.grad_scaler
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        elif scaler is not None:
            logger.info("Checkpoint has no fp16 gradient-scaler state (saved without amp='fp16'): the scale starts afresh.")

    # -- running ----------------------------------------------------------------------------
    def resume_or_load(self, resume: bool = True, weights: Optional[str] = None) -> None:
        """Continue from ``last_checkpoint`` (``resume`` and one exists), else initialise from weights.

        A resume that would not continue the run it finds raises ``ResumeError`` (see
        :func:`flexcore.engine.run_dir.check_resume`) before anything is written.

        Args:
            resume: look for the output dir's last checkpoint.
            weights: model weights for a fresh start (default ``Checkpoints.init_weights``).
        """
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            self.checkpointer.load(path)  # restores the iteration, hooks and RNG states last
            check_resume(path, self.iter, self._saved_max_iter, self.max_iter)
            self.start_iter = self.iter + 1
            logger.info("Resumed from %s: continuing at iteration %d of %d", path, self.start_iter, self.max_iter)
        else:
            if resume:
                logger.info("--resume: no checkpoint in %s yet, starting from scratch", self.output_dir)
            path = weights or self.cfg.checkpoints.init_weights
            if path:
                self.checkpointer.load(path, checkpointables=[], strict=self.cfg.checkpoints.init_strict)
            self.start_iter = 0

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def train(self) -> Dict[str, Any]:
        """Train from ``start_iter`` to ``max_iter``; returns the results (also in ``summary.json``).

        Raises ``ResultsIncompleteError`` after saving the final model and the summary if a
        result could not be produced (the summary's ``errors`` say which). Runs inside
        :meth:`process_settings`.
        """
        with self.process_settings():
            return self._train()

    def _train(self) -> Dict[str, Any]:
        profile_steps, d = self.cfg.outputs.profile_steps, self.cfg.data
        if comm.is_main_process() and not profile_steps:
            remove_stale_temp_files(self.output_dir)
        finished = None if profile_steps or self.start_iter < self.max_iter else finished_summary(self.output_dir)
        if finished is not None:
            self.results = finished
            raise_recorded_errors(self.output_dir, finished)
            return finished
        start = self._session_start = time.perf_counter()
        self._trainer.data_loader = build_train_loader(
            self.train_set, d.batch_size, seed=self.seed, num_workers=d.num_workers,
            start_iter=self.start_iter, drop_last=d.drop_last, pin_memory=self.device.type == "cuda",
        )
        self._trainer.reset_data_iter()
        self._open_writers()
        end = self.max_iter
        if profile_steps:  # warm-up steps + profiled steps, then stop
            end = min(self.max_iter, self.start_iter + 2 + profile_steps)
        try:
            super().train(self.start_iter, end)
        except NonFiniteLossError as exc:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else ""
            where = f"The last good checkpoint is {last}" if last else "No checkpoint was written before it"
            raise NonFiniteLossError(
                exc.iteration, exc.losses,
                f"{exc} {where}; nothing was overwritten. Lower the learning rate (Solver.lr), enable "
                "gradient clipping (Solver.grad_clip) or check the data, then rerun with --resume"
                + ("." if last else " (it starts from scratch, replacing this attempt's metrics)."),
            ) from None
        wall = time.perf_counter() - start
        if profile_steps:
            return {"profile": next(h for h in self._hooks if isinstance(h, HOOKS.get_raw("TorchProfiler"))).table}
        self.results = self._summarize(wall)
        raise_recorded_errors(self.output_dir, self.results)
        return self.results

    # -- results ----------------------------------------------------------------------------
    def _summarize(self, wall_time: float) -> Dict[str, Any]:
        timer = next(h for h in self._hooks if isinstance(h, H.IterationTimer))
        per_rank = per_rank_batch_size(self.cfg.data.batch_size)
        throughput = per_rank * comm.get_world_size() * timer.counted_steps / timer.step_time if timer.step_time else float("nan")
        results: Dict[str, Any] = {
            "parameters": self.num_parameters,
            "iterations": self.max_iter,
            "epochs": round(self.max_iter / self.iters_per_epoch, 4),
            # every session of the run, each counted up to its last checkpoint (a resume redoes the rest)
            "wall_time_s": round(self._earlier_wall_s + wall_time, 2),
            "train_samples_per_s": round(throughput, 1),
        }
        if self.start_iter:
            results["resumed_at_iteration"] = self.start_iter
            results["session_wall_time_s"] = round(wall_time, 2)
        results.update(self.summary_extras)  # what hooks measured (FlopSummary: flops_per_sample)
        if self.eval_hook is not None:
            results.update(self.eval_hook.summary())
        rows = [(k, f"{v:,}" if isinstance(v, int) else f"{v:.4g}" if isinstance(v, float) else v) for k, v in results.items()]
        table = tabulate(rows, headers=["", "value"], tablefmt="github", disable_numparse=True, colalign=("left", "right"))
        logger.info("Summary of %s:\n%s", self.output_dir, table)
        if comm.is_main_process():
            path = os.path.join(self.output_dir, "summary.json")
            with atomic_open(path, "w") as f:
                json.dump(results, cut_write(path, f), indent=2)
        return results

    def evaluate_only(self, weights: Optional[str] = None,
                      after_load: Optional[Callable[["Trainer"], None]] = None) -> Dict[str, Dict[str, float]]:
        """Evaluate ``weights`` (default: the output dir's last checkpoint) on the val and test splits.

        Args:
            weights: checkpoint path or URI.
            after_load: called with the trainer once the weights are in (e.g. to adapt the
                model to another resolution).
        """
        path = weights or (self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else "")
        if not path:
            raise CheckpointError(
                f"--eval-only needs weights: pass --weights PATH, or point --output-dir at a run with a checkpoint "
                f"({self.output_dir} has no last_checkpoint)."
            )
        with self.process_settings():
            self.checkpointer.load(path, checkpointables=[])
            if after_load is not None:
                after_load(self)
            return self.evaluate_loaded(path)

    def evaluate_loaded(self, label: str = "the current model") -> Dict[str, Dict[str, float]]:
        """Evaluate the model as it is on the val and test splits; log a table, write ``eval_results.json``."""
        results = {}
        with self.process_settings():
            for split, dataset in (("val", self.val_set), ("test", self.test_set)):
                if dataset is not None:
                    results[split] = evaluate(self.model, self.eval_loader(dataset), self.task)
        rows = [(split, *(f"{r.get(k, float('nan')):.4f}" for k in ("accuracy", "top5", "loss")), int(r["samples"]))
                for split, r in results.items()]
        logger.info("Evaluation of %s:\n%s", label,
                    tabulate(rows, headers=["split", "accuracy", "top5", "loss", "samples"], tablefmt="github"))
        if comm.is_main_process():
            with atomic_open(os.path.join(self.output_dir, "eval_results.json"), "w") as f:
                json.dump({"weights": label, **results}, f, indent=2)
        return results


@gin.configurable(module="engine")
def experiment(job: Optional[Callable[..., Any]] = None) -> Callable[..., Any]:
    """The job ``main`` runs: ``@Trainer`` (default) or another, e.g. ``experiment.job = @CrossResolution``.

    A job is built as ``job(output_dir, **overrides)`` and offers ``resume_or_load(resume,
    weights)``, ``train()`` and ``evaluate_only(weights)``.
    """
    return job or Trainer

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
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

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
from flexcore.engine.trainer_options import build_regularizers, check_options, resolve_device
from flexcore.engine.train_loop import HookBase, NonFiniteLossError, SimpleTrainer, TrainerBase, unwrap_model
from flexcore.layers.fft_cost import fft_autotune_scope
from flexcore.modeling.build import build_model as build_network
from flexcore.registry import HOOKS, LR_SCHEDULES, OPTIMIZERS
from flexcore.solver import build_param_groups
from flexcore.utils import comm
from flexcore.utils.env import seed_all_rng, torch_settings
from flexcore.utils.events import CommonMetricPrinter, JSONWriter, TensorboardWriter
from flexcore.utils.faults import cut_write
from flexcore.utils.file_io import atomic_open, path_manager
from flexcore.utils.parameters import count_parameters

__all__ = ["Trainer", "count_parameters", "experiment"]

logger = logging.getLogger("flexcore")


@gin.configurable(module="engine")
class Trainer(TrainerBase):
    """Train and evaluate one experiment; every argument but ``output_dir`` comes from gin.

    Args:
        output_dir: where checkpoints, metrics and logs go.
        dataset: registered dataset name. Per-split options go through gin scopes
            ``train/``, ``val/``, ``test/`` (``train/build_dataset.augment = ...`` or
            ``train/Digits.resolution = 8``).
        dataset_options: options passed to the dataset for every split (e.g.
            ``{'resolution': 16}``; ``CrossResolution`` sets the resolution this way).
        batch_size: the global batch (split evenly over DDP processes).
        eval_batch_size: batch for evaluation (default: ``batch_size``).
        num_workers: loader worker processes per rank.
        epochs, max_iter: the run's length; give exactly one.
        lr: base learning rate (groups scale it by their ``lr_factor``).
        optimizer: ``OPTIMIZERS`` factory ``(param_groups, lr) -> Optimizer`` (default ``@Adam``).
        schedule: ``LR_SCHEDULES`` factory ``(optimizer, max_iter, iters_per_epoch)``
            (default ``@Constant``; e.g. ``@Cosine``).
        param_groups: ``(model) -> groups`` (``build_param_groups``: lr factors, weight-decay rules).
        regularizers: name -> ``REGULARIZERS`` factory (or a list of factories), each
            ``() -> callable(model) -> scalar`` added to the loss and logged as ``reg/<name>``.
        grad_clip, grad_clip_type: gradient clipping (0: off; ``"norm"`` or ``"value"``).
        eval_period, checkpoint_period: how often to validate / save, in ``period_unit``
            (0: only at the end).
        period_unit: ``"epoch"`` or ``"iter"``.
        log_period: iterations between metric lines (console, metrics.json, TensorBoard).
        max_to_keep: periodic checkpoints kept (None: all).
        seed: seeds model init, data order and augmentation (-1: draw one).
        deterministic: deterministic kernels (:func:`flexcore.utils.env.set_deterministic`; not
            with ``fft_autotune``).
        val_split: split for model selection (None: on ``test_split``, as the original's image runs).
        test_split: split for the final test (None: no test).
        fake_data: random data of the dataset's shape (``--fake-data``).
        drop_last: drop each epoch's last incomplete training batch.
        device: ``"auto"`` (this rank's GPU, else CPU), ``"cpu"``, ``"cuda:0"``, ...
        init_weights: checkpoint to initialise the model from (``--weights``).
        init_strict: a key/shape mismatch with ``init_weights`` is an error (False: load what fits).
        weights_only: safe checkpoint loading (``--unsafe-load`` turns it off).
        extra_hooks: ``HOOKS`` factories ``() -> HookBase`` run after the built-in ones.
        tensorboard: write TensorBoard event files.
        num_threads: torch's CPU threads during the run (None: torch's default, one per core);
            small models gain nothing from more, and on a shared machine they slow every step.
        profile_steps: profile this many steps with ``TorchProfiler`` (``--profile N``).
        compile: ``torch.compile`` the model (compiled on the first step; a failure there
            is logged and training continues eagerly unless ``compile_fallback`` is False).
        compile_mode, compile_backend: torch.compile's (None, ``"reduce-overhead"``, ...; ``"inductor"``,
            ``"aot_eager"`` to debug). compile_fallback: train eagerly if compiling fails (False: raise).
        channels_last: channels-last memory for the model and 4-D inputs (2-D image models).
        kernel_report: write the kernel report (sizes, plots) at the end of training.
        amp: mixed precision of the training forward: None (float32), ``"bf16"`` or ``"fp16"`` (with
            a gradient scaler). FFT convolutions and evaluation run in float32 whatever the input.
        fft_autotune: during the run, time the spatial and FFT paths once per shape where the 'auto'
            cost model cannot tell them apart; keep the faster (``flexcore.layers.fft_cost``).
            Off, evaluations take the model's picks too: repeated/resumed runs match to the bit.

    Construction only assembles: a subclass overrides :meth:`build_datasets`,
    :meth:`build_model`, :meth:`build_solver` or :meth:`build_hooks` (docs/training.md).
    Threads, determinism and FFT autotune hold only within :meth:`process_settings`.
    """

    def __init__(
        self,
        output_dir: str,
        dataset: str = gin.REQUIRED,
        dataset_options: Optional[Mapping[str, Any]] = None,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        epochs: int = 0,
        max_iter: int = 0,
        lr: float = 1e-3,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        schedule: Optional[Callable[..., Any]] = None,
        param_groups: Callable[[nn.Module], List[Dict[str, Any]]] = build_param_groups,
        regularizers: Union[Mapping[str, Callable[[], Callable]], Sequence[Callable[[], Callable]]] = (),
        grad_clip: float = 0.0,
        grad_clip_type: str = "norm",
        eval_period: int = 1,
        checkpoint_period: int = 1,
        period_unit: str = "epoch",
        log_period: int = 20,
        max_to_keep: Optional[int] = 3,
        seed: int = 0,
        deterministic: bool = False,
        val_split: Optional[str] = "val",
        test_split: Optional[str] = "test",
        fake_data: bool = False,
        drop_last: bool = False,
        device: str = "auto",
        init_weights: Optional[str] = None,
        init_strict: bool = True,
        weights_only: bool = True,
        extra_hooks: Sequence[Callable[[], HookBase]] = (),
        tensorboard: bool = True,
        num_threads: Optional[int] = None,
        profile_steps: int = 0,
        compile: bool = False,
        compile_mode: Optional[str] = None,
        compile_backend: str = "inductor",
        compile_fallback: bool = True,
        channels_last: bool = False,
        amp: Optional[str] = None,
        kernel_report: bool = True,
        fft_autotune: bool = False,
    ):
        super().__init__()
        options = {k: v for k, v in locals().items() if k not in ("self", "output_dir", "__class__")}
        check_options(options)
        self.options = SimpleNamespace(**options)
        self._set_legacy_attributes(self.options)
        self.output_dir = output_dir
        if comm.is_main_process():
            path_manager.mkdirs(output_dir)
        self.start_iter = 0
        self._earlier_wall_s = 0.0  # training time of earlier sessions of this run (from the checkpoint)
        self._saved_max_iter: Optional[int] = None  # the run length a resumed checkpoint was saved with
        self._session_start: Optional[float] = None
        self.validation_result: Optional[Dict[str, Any]] = None
        self.results: Dict[str, Any] = {}
        self.summary_extras: Dict[str, Any] = {}  # hooks add entries to summary.json here
        with self.process_settings():
            self.seed = seed_all_rng(seed)
            self.train_set, self.val_set, self.test_set = self.build_datasets()
            self.metadata = self.train_set.metadata
            self.task = build_task(self.metadata)
            self.model = self.build_model()  # every rank builds the same model (DDP also broadcasts rank 0's)
            self._plan_iterations()
            self.optimizer, self.scheduler, self.regularizers = self.build_solver(unwrap_model(self.model))
            self._trainer = self._build_step()
            self.checkpointer = Checkpointer(
                unwrap_model(self.model), output_dir, weights_only=weights_only,
                optimizer=self.optimizer, scheduler=self.scheduler, trainer=self,
            )
            self.register_hooks(self.build_hooks())

    def _set_legacy_attributes(self, o: SimpleNamespace) -> None:
        """The options under the attribute names the trainer always had (read by subclasses and jobs)."""
        self.dataset_name, self.dataset_options = o.dataset, dict(o.dataset_options or {})
        self.batch_size, self.eval_batch_size = o.batch_size, o.eval_batch_size or o.batch_size
        self.num_workers, self.drop_last, self.fake_data = o.num_workers, o.drop_last, o.fake_data
        self.init_weights, self.init_strict = o.init_weights, o.init_strict
        self.profile_steps, self.log_period, self.tensorboard = o.profile_steps, o.log_period, o.tensorboard
        self.max_to_keep, self.kernel_report = o.max_to_keep, o.kernel_report

    @contextlib.contextmanager
    def process_settings(self) -> Iterator[None]:
        """torch threads, deterministic kernels and FFT autotune (timed picks, training and
        inference, only if asked: they could differ between runs in float bits) as configured,
        restored on exit. Construction, :meth:`train` and evaluation run inside it."""
        o = self.options
        with torch_settings(o.num_threads, o.deterministic), fft_autotune_scope(o.fft_autotune, o.fft_autotune):
            yield

    # -- construction: override one of these in a subclass ------------------------------------
    def build_datasets(self) -> Tuple[Any, Optional[Any], Optional[Any]]:
        """``(train, val, test)`` datasets (val/test None when their split is off); gin scope per split."""
        o = self.options
        return (self._build_split("train"), self._build_split(o.val_split) if o.val_split else None,
                self._build_split(o.test_split) if o.test_split else None)

    def _build_split(self, split: str):
        with gin.config_scope(split):
            dataset = build_dataset(name=self.dataset_name, split=split, fake=self.fake_data, **self.dataset_options)
        if not hasattr(dataset, "metadata"):
            raise TypeError(f"Dataset {self.dataset_name!r} ({split}) has no .metadata; see docs/contracts.md")
        return dataset

    def build_model(self) -> nn.Module:
        """The network for ``self.metadata`` on ``self.device``: compiled and DDP-wrapped as configured."""
        o = self.options
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
        o = self.options
        sampler = TrainingBatchSampler(len(self.train_set), per_rank_batch_size(o.batch_size), drop_last=o.drop_last)
        self.iters_per_epoch = sampler.iters_per_epoch
        self.max_iter = o.max_iter or o.epochs * self.iters_per_epoch
        unit = self.iters_per_epoch if o.period_unit == "epoch" else 1
        self.eval_period = o.eval_period * unit
        self.checkpoint_period = o.checkpoint_period * unit
        logger.info(
            "Data: %s (%d train / %s val / %s test samples); global batch %d = %d per process x %d; "
            "%d iterations per epoch, %d iterations (%.4g epochs)",
            o.dataset, len(self.train_set), len(self.val_set) if self.val_set is not None else "no",
            len(self.test_set) if self.test_set is not None else "no", o.batch_size,
            per_rank_batch_size(o.batch_size), comm.get_world_size(), self.iters_per_epoch, self.max_iter,
            self.max_iter / self.iters_per_epoch,
        )

    def build_solver(self, model: nn.Module) -> Tuple[torch.optim.Optimizer, Any, Dict[str, Callable]]:
        """``(optimizer, lr schedule, regularizers)`` for the (unwrapped) ``model``.

        Defaults are looked up by name so that their gin bindings (``Adam.betas = ...``) apply.
        """
        o = self.options
        optimizer = (o.optimizer or OPTIMIZERS.get("Adam"))(o.param_groups(model), lr=o.lr)
        schedule = (o.schedule or LR_SCHEDULES.get("Constant"))(
            optimizer, max_iter=self.max_iter, iters_per_epoch=self.iters_per_epoch)
        return optimizer, schedule, build_regularizers(o.regularizers)

    def _build_step(self) -> SimpleTrainer:
        o = self.options
        return SimpleTrainer(
            self.model, None, self.optimizer, self.task.loss, self.regularizers, grad_clip=o.grad_clip,
            grad_clip_type=o.grad_clip_type, device=self.device, batch_metrics=self.task.train_batch_metrics,
            amp=o.amp, channels_last=o.channels_last, compile_fallback=o.compile_fallback,
        )

    def eval_loader(self, dataset):
        """A loader over ``dataset`` for evaluation (the eval batch, in order); None for None."""
        return None if dataset is None else build_test_loader(dataset, self.eval_batch_size, self.num_workers)

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
        if self.profile_steps:
            hooks.append(HOOKS.get("TorchProfiler")(os.path.join(self.output_dir, "profile"), warmup_steps=2,
                                                    num_steps=self.profile_steps))
            return hooks + [H.LRScheduler(self.optimizer, self.scheduler)]
        if self.val_set is not None or self.test_set is not None:
            self.eval_hook = H.EvalHook(
                self.eval_period, self.task, self.eval_loader(self.val_set), self.eval_loader(self.test_set),
                checkpointer=self.checkpointer, iters_per_epoch=self.iters_per_epoch,
            )
            hooks.append(self.eval_hook)
        hooks += [H.LRScheduler(self.optimizer, self.scheduler), HOOKS.get("KernelSizeLogger")(period=self.log_period)]
        hooks += [factory() for factory in self.options.extra_hooks]
        main = comm.is_main_process()
        if main:
            # Writers are attached in train(): they need the start iteration (resume).
            hooks.append(H.PeriodicWriter([], period=self.log_period, checkpoint_period=self.checkpoint_period))
            hooks.append(H.Progress())
            if self.kernel_report:
                hooks.append(HOOKS.get("KernelReport")())
            hooks.append(HOOKS.get("FlopSummary")())
        # Last: a checkpoint is never ahead of metrics.json (a run killed between the two
        # would resume past a step whose metrics line was never written).
        hooks.append(H.PeriodicCheckpointer(self.checkpointer, self.checkpoint_period, max_to_keep=self.max_to_keep))
        return hooks

    def _open_writers(self) -> None:
        writer_hook = next((h for h in self._hooks if isinstance(h, H.PeriodicWriter)), None)
        if writer_hook is None:
            return
        start = self.start_iter
        writers = [
            CommonMetricPrinter(self.max_iter, window_size=self.log_period, iters_per_epoch=self.iters_per_epoch,
                                keys=("train/accuracy",)),
            JSONWriter(os.path.join(self.output_dir, "metrics.json"), window_size=self.log_period, start_iter=start,
                       iters_per_epoch=self.iters_per_epoch),
        ]
        if self.tensorboard:
            writers.append(TensorboardWriter(self.output_dir, window_size=self.log_period, start_iter=start))
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
            weights: model weights for a fresh start (default ``Trainer.init_weights``).
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
            path = weights or self.init_weights
            if path:
                self.checkpointer.load(path, checkpointables=[], strict=self.init_strict)
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
        if comm.is_main_process() and not self.profile_steps:
            remove_stale_temp_files(self.output_dir)
        finished = None if self.profile_steps or self.start_iter < self.max_iter else finished_summary(self.output_dir)
        if finished is not None:
            self.results = finished
            raise_recorded_errors(self.output_dir, finished)
            return finished
        start = self._session_start = time.perf_counter()
        self._trainer.data_loader = build_train_loader(
            self.train_set, self.batch_size, seed=self.seed, num_workers=self.num_workers,
            start_iter=self.start_iter, drop_last=self.drop_last, pin_memory=self.device.type == "cuda",
        )
        self._trainer.reset_data_iter()
        self._open_writers()
        end = self.max_iter
        if self.profile_steps:  # warm-up steps + profiled steps, then stop
            end = min(self.max_iter, self.start_iter + 2 + self.profile_steps)
        try:
            super().train(self.start_iter, end)
        except NonFiniteLossError as exc:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else ""
            where = f"The last good checkpoint is {last}" if last else "No checkpoint was written before it"
            raise NonFiniteLossError(
                exc.iteration, exc.losses,
                f"{exc} {where}; nothing was overwritten. Lower the learning rate (Trainer.lr), enable "
                "gradient clipping (Trainer.grad_clip) or check the data, then rerun with --resume"
                + ("." if last else " (it starts from scratch, replacing this attempt's metrics)."),
            ) from None
        wall = time.perf_counter() - start
        if self.profile_steps:
            return {"profile": next(h for h in self._hooks if isinstance(h, HOOKS.get_raw("TorchProfiler"))).table}
        self.results = self._summarize(wall)
        raise_recorded_errors(self.output_dir, self.results)
        return self.results

    # -- results ----------------------------------------------------------------------------
    def _summarize(self, wall_time: float) -> Dict[str, Any]:
        timer = next(h for h in self._hooks if isinstance(h, H.IterationTimer))
        per_rank = per_rank_batch_size(self.batch_size)
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

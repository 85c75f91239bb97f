"""Cross-resolution experiments (as the original's `run_crossres.py`): train at one resolution, test and fine-tune at another.

    include 'quick/digits_flexnet.gin'
    experiment.job = @CrossResolution
    CrossResolution.source_resolution = 8
    CrossResolution.target_resolution = 16
    CrossResolution.finetune_epochs = 5

Stages, each a full :class:`Trainer` run in its own folder of the output dir:

1. ``source/``: train on the dataset at ``source_resolution`` with every continuous conv's
   horizon set to ``source_resolution + horizon_offset``; its best validation model is
   tested at the source resolution.
2. Out of the box: that model, unchanged but for each continuous conv's
   ``set_resolution(horizon=target + offset, sampling_rate_norm=(source/target)^D)`` (and
   N-Jet layers' ``scale_factor = target/source``), is tested at ``target_resolution``.
3. ``target/``: the adapted model is fine-tuned at the target resolution with a fresh
   optimiser and schedule for ``finetune_epochs`` and tested again.

The three test accuracies and the out-of-the-box change go to ``summary.json`` and a
table. ``--resume`` skips a finished source stage and resumes the stage that was running.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

import gin
import torch.nn as nn
from tabulate import tabulate

from flexcore.engine.evaluation import evaluate
from flexcore.engine.train_loop import unwrap_model
from flexcore.engine.trainer import Trainer
from flexcore.layers import continuous_convs, set_scale_factor
from flexcore.utils import comm
from flexcore.utils.file_io import atomic_open

__all__ = ["CrossResolution", "set_model_resolution"]

logger = logging.getLogger("flexcore")


def set_model_resolution(model: nn.Module, resolution: int, trained_resolution: int, dim: int,
                         horizon_offset: int = 1) -> int:
    """Adapt every resolution-dependent layer of ``model`` to data at ``resolution``.

    Continuous convs get ``horizon = resolution + horizon_offset`` and ``sampling_rate_norm =
    (trained_resolution / resolution) ** dim`` (their kernels are sampled more densely, so
    each tap weighs less); N-Jet layers scale their Gaussians by ``resolution /
    trained_resolution``. Returns how many layers were adapted.
    """
    ratio = trained_resolution / resolution
    count = 0
    for _, conv in continuous_convs(model):
        conv.set_resolution(horizon=resolution + horizon_offset, sampling_rate_norm=ratio ** dim)
        count += 1
    count += set_scale_factor(model, 1.0 / ratio)
    return count


def _test_accuracy(results: Dict[str, Any]) -> Optional[float]:
    for key in ("test_accuracy_best_model", "test_accuracy_final_model"):
        if key in results:
            return results[key]
    return None


@gin.configurable(module="engine")
class CrossResolution:
    """Train at ``source_resolution``, test at ``target_resolution`` out of the box, fine-tune there.

    Args:
        output_dir: run folder; the stages go to ``source/`` and ``target/`` inside it.
        source_resolution, target_resolution: the dataset's ``resolution`` option per stage.
        finetune_epochs: epochs of the fine-tuning stage (the source stage uses ``Schedule.epochs``).
        finetune_lr: learning rate of the fine-tuning stage (default: ``Solver.lr``).
        horizon_offset: continuous convs get ``horizon = resolution + horizon_offset``
            (1: an odd kernel covering the image, as the paper's runs).
        resolution_option: the dataset option that sets the resolution.
        trainer_overrides: passed to both stages' :class:`Trainer` (``main`` forwards
            ``--fake-data``, ``--seed``, ``--unsafe-load`` this way).
    """

    def __init__(
        self,
        output_dir: str,
        source_resolution: int = gin.REQUIRED,
        target_resolution: int = gin.REQUIRED,
        finetune_epochs: int = gin.REQUIRED,
        finetune_lr: Optional[float] = None,
        horizon_offset: int = 1,
        resolution_option: str = "resolution",
        **trainer_overrides: Any,
    ):
        if source_resolution <= 0 or target_resolution <= 0 or source_resolution == target_resolution:
            raise ValueError(
                f"CrossResolution: source_resolution ({source_resolution}) and target_resolution "
                f"({target_resolution}) must be positive and different."
            )
        if finetune_epochs < 1:
            raise ValueError(f"CrossResolution.finetune_epochs must be >= 1, got {finetune_epochs}")
        self.output_dir = output_dir
        self.source_resolution = int(source_resolution)
        self.target_resolution = int(target_resolution)
        self.finetune_epochs = int(finetune_epochs)
        self.finetune_lr = finetune_lr
        self.horizon_offset = int(horizon_offset)
        self.resolution_option = resolution_option
        self.trainer_overrides = dict(trainer_overrides)
        self.resume = False
        self.weights: Optional[str] = None
        self.results: Dict[str, Any] = {}

    # -- the common job interface (see flexcore.engine.defaults.main) ----------------------
    def resume_or_load(self, resume: bool = True, weights: Optional[str] = None) -> None:
        """Remember how to start: stages resume from their own checkpoints; ``weights`` initialise the source stage."""
        self.resume = resume
        self.weights = weights

    def _stage(self, name: str, resolution: int, **overrides: Any) -> Trainer:
        trainer = Trainer(
            os.path.join(self.output_dir, name),
            dataset_options={self.resolution_option: resolution},
            **{**self.trainer_overrides, **overrides},
        )
        return trainer

    def _adapt(self, trainer: Trainer, resolution: int) -> None:
        n = set_model_resolution(unwrap_model(trainer.model), resolution, self.source_resolution,
                                 trainer.metadata.dim, self.horizon_offset)
        logger.info("Adapted %d layers to resolution %d (trained at %d)", n, resolution, self.source_resolution)

    def _source(self) -> Dict[str, Any]:
        done = os.path.join(self.output_dir, "source", "summary.json")
        if self.resume and os.path.exists(done):
            logger.info("Source stage already finished (%s): skipping to the target stage", done)
            with open(done) as f:
                return json.load(f)
        logger.info("Cross-resolution stage 1: train at resolution %d", self.source_resolution)
        trainer = self._stage("source", self.source_resolution)
        self._adapt(trainer, self.source_resolution)  # horizon = source + offset, sampling_rate_norm 1
        trainer.resume_or_load(resume=self.resume, weights=self.weights)
        return trainer.train()

    def _source_weights(self) -> str:
        folder = os.path.join(self.output_dir, "source")
        for name in ("model_best.pth", "model_final.pth"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise FileNotFoundError(f"CrossResolution: no model_best.pth or model_final.pth in {folder}")

    def _target(self) -> Dict[str, Any]:
        overrides: Dict[str, Any] = {"epochs": self.finetune_epochs, "max_iter": 0}
        if self.finetune_lr is not None:
            overrides["lr"] = self.finetune_lr
        trainer = self._stage("target", self.target_resolution, **overrides)
        ootb_file = os.path.join(self.output_dir, "target", "out_of_the_box.json")
        resuming = self.resume and trainer.checkpointer.has_checkpoint()
        if resuming and os.path.exists(ootb_file):
            with open(ootb_file) as f:
                ootb = json.load(f)
            trainer.resume_or_load(resume=True)
        else:
            source = self._source_weights()
            logger.info("Cross-resolution stage 2: %s tested out of the box at resolution %d", source,
                        self.target_resolution)
            trainer.checkpointer.load(source, checkpointables=[])
            self._adapt(trainer, self.target_resolution)
            ootb = {}
            with trainer.process_settings():  # the run's threads and FFT autotune, as its training gets
                for split, dataset in (("val", trainer.val_set), ("test", trainer.test_set)):
                    if dataset is not None:
                        ootb[split] = evaluate(trainer.model, trainer.eval_loader(dataset), trainer.task)
            if comm.is_main_process():
                with atomic_open(ootb_file, "w") as f:
                    json.dump(ootb, f, indent=2)
        self._adapt(trainer, self.target_resolution)  # sampling_rate_norm is no buffer: set it after any load
        logger.info("Cross-resolution stage 3: fine-tune %d epochs at resolution %d", self.finetune_epochs,
                    self.target_resolution)
        results = trainer.train()
        results["out_of_the_box"] = ootb
        return results

    def train(self) -> Dict[str, Any]:
        """Run the stages; returns source, out-of-the-box and fine-tuned test accuracies."""
        source = self._source()
        target = self._target()
        ootb_test = target["out_of_the_box"].get("test", {})
        src_acc, ootb_acc, ft_acc = _test_accuracy(source), ootb_test.get("accuracy"), _test_accuracy(target)
        self.results = {
            "source_resolution": self.source_resolution,
            "target_resolution": self.target_resolution,
            "source_test_accuracy": src_acc,
            "ootb_test_accuracy": ootb_acc,
            "ootb_difference": None if src_acc is None or ootb_acc is None else ootb_acc - src_acc,
            "finetuned_test_accuracy": ft_acc,
            "source": source,
            "target": target,
        }
        rows = [
            (f"source ({self.source_resolution})", src_acc),
            (f"out of the box ({self.target_resolution})", ootb_acc),
            ("out-of-the-box change", self.results["ootb_difference"]),
            (f"fine-tuned ({self.target_resolution})", ft_acc),
        ]
        logger.info("Cross-resolution summary (test accuracy, %%):\n%s",
                    tabulate(rows, headers=["", "accuracy"], tablefmt="github", floatfmt=".2f"))
        if comm.is_main_process():
            with atomic_open(os.path.join(self.output_dir, "summary.json"), "w") as f:
                json.dump(self.results, f, indent=2)
        return self.results

    def evaluate_only(self, weights: Optional[str] = None) -> Dict[str, Any]:
        """Evaluate ``weights`` (default: the fine-tuned stage's last checkpoint) at the target resolution."""
        trainer = self._stage("target", self.target_resolution)
        return trainer.evaluate_only(weights, after_load=lambda t: self._adapt(t, self.target_resolution))

"""Task losses and evaluation metrics (top-1, top-5, loss, MSE), reduced over ranks."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.data.base import DatasetMetadata
from flexcore.engine.train_loop import unwrap_model
from flexcore.utils import comm

__all__ = ["Task", "build_task", "evaluate"]

logger = logging.getLogger("flexcore")


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # (B, C) vs (B,), or per time step (B, C, L) vs (B, L): F.cross_entropy takes both.
    return F.cross_entropy(outputs, targets)


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets.to(outputs.dtype)
    if outputs.shape != targets.shape and outputs.numel() == targets.numel():
        outputs = outputs.reshape(targets.shape)  # (B, 1) logits vs (B,) targets
    return F.mse_loss(outputs, targets)


LOSSES: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "mse": _mse,
}


@dataclasses.dataclass
class Task:
    """How a dataset's outputs are scored.

    Attributes:
        kind: the metadata's ``task`` (classification, sequence_classification, regression).
        loss: ``loss(outputs, targets) -> scalar`` (mean over the batch).
        num_classes: logits per prediction.
        metric: the metric that selects the best checkpoint (``accuracy`` or ``loss``).
        mode: ``"max"`` if a larger ``metric`` is better, else ``"min"``.
    """

    kind: str
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    num_classes: int
    metric: str
    mode: str

    @property
    def is_classification(self) -> bool:
        return self.kind in ("classification", "sequence_classification")

    def batch_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> Dict[str, float]:
        """Sums over one batch: ``count`` predictions, ``loss`` (x count), ``correct``, ``correct5``."""
        count = targets.numel() if self.is_classification else targets.shape[0]
        sums = {"count": float(count), "loss": float(self.loss(outputs, targets)) * count}
        if self.is_classification:
            k = min(5, self.num_classes)
            topk = outputs.topk(k, dim=1).indices  # (B, k) or (B, k, L)
            hits = topk.eq(targets.unsqueeze(1))
            sums["correct"] = float(hits[:, :1].sum())
            if self.num_classes > 5:
                sums["correct5"] = float(hits.sum())
        return sums

    def summarize(self, sums: Dict[str, float]) -> Dict[str, float]:
        """Metrics from accumulated :meth:`batch_sums`: loss, accuracy and top5 (percent), or mse."""
        count = max(sums.get("count", 0.0), 1.0)
        result = {"loss": sums["loss"] / count}
        if self.is_classification:
            result["accuracy"] = 100.0 * sums["correct"] / count
            if "correct5" in sums:
                result["top5"] = 100.0 * sums["correct5"] / count
        else:
            result["mse"] = result["loss"]
        return result

    def train_batch_metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per-step training accuracy (classification only), logged as ``train/accuracy``.

        A 0-d tensor: the trainer reads it back with the loss in one device-to-host copy.
        """
        if not self.is_classification:
            return {}
        correct = outputs.argmax(dim=1).eq(targets).float().mean()
        return {"train/accuracy": 100.0 * correct}


def build_task(metadata: DatasetMetadata) -> Task:
    """The :class:`Task` of a dataset, from its metadata's ``task`` and ``loss``."""
    if metadata.loss not in LOSSES:
        raise ValueError(
            f"Dataset {metadata.name!r} asks for loss {metadata.loss!r}; known losses: {sorted(LOSSES)}. "
            "Add it to flexcore.engine.evaluation.LOSSES."
        )
    if metadata.task in ("classification", "sequence_classification"):
        return Task(metadata.task, LOSSES[metadata.loss], metadata.num_classes, "accuracy", "max")
    if metadata.task == "regression":
        return Task(metadata.task, LOSSES[metadata.loss], metadata.num_classes, "loss", "min")
    raise ValueError(
        f"Dataset {metadata.name!r} has task {metadata.task!r}; the trainer knows "
        "classification, sequence_classification and regression."
    )


@torch.no_grad()
def evaluate(model: nn.Module, data_loader: Iterable, task: Task, device: Optional[torch.device] = None) -> Dict[str, float]:
    """Score ``model`` on every batch of ``data_loader`` (this rank's shard), summed over ranks.

    Returns ``loss`` and ``accuracy``/``top5`` (percent) for classification, ``mse`` for
    regression, plus ``samples`` (evaluated over all ranks) and ``time`` (seconds).
    """
    # The bare module: a DDP forward may broadcast buffers, and shards can differ in length.
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    start = time.perf_counter()
    sums: Dict[str, float] = {}
    try:
        for inputs, targets in data_loader:
            outputs = model(inputs.to(device, non_blocking=True))
            sums["samples"] = sums.get("samples", 0.0) + inputs.shape[0]
            for key, value in task.batch_sums(outputs, targets.to(device, non_blocking=True)).items():
                sums[key] = sums.get(key, 0.0) + value
    finally:
        model.train(was_training)
    keys = sorted(set().union(*comm.all_gather(sorted(sums)))) if comm.get_world_size() > 1 else sorted(sums)
    sums = comm.all_reduce_dict({k: sums.get(k, 0.0) for k in keys}, average=False)
    if not sums.get("count"):
        raise ValueError("Evaluation saw no samples: the data loader is empty.")
    result = task.summarize(sums)
    result["samples"] = sums["samples"]
    result["time"] = time.perf_counter() - start
    return result

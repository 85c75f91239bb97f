"""Dataset contract shared by every loader: metadata, roots, errors, splits, fake data.

A registered dataset is a ``torch.utils.data.Dataset`` subclass built as
``factory(root=None, split="train", **options)``. It exposes ``.metadata``
(:class:`DatasetMetadata`) and a classmethod ``describe(**options)`` that returns the
same metadata *without touching the disk*, so models can be built and analysed
without the data (``--fake-data``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import gin
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "DatasetMetadata",
    "DatasetError",
    "MissingDatasetError",
    "CorruptDatasetError",
    "SPLITS",
    "default_root",
    "dataset_dir",
    "holdout_indices",
    "FakeDataset",
    "build_dataset",
    "describe_dataset",
]

SPLITS = ("train", "val", "test")
ENV_ROOT = "FLEXCORE_DATASETS"


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What a model needs to know about its data, available without reading files.

    Attributes:
        name: registered dataset name.
        in_channels: channels of one input sample ``(C, *shape)``.
        num_classes: logits the model must produce (1 for scalar regression).
        shape: spatial shape of one sample, e.g. ``(32, 32)`` or ``(1024,)``.
        task: ``"classification"``, ``"regression"`` or ``"sequence_classification"``
            (one label per time step, e.g. copy memory).
        split_sizes: samples per split where known without reading files.
        loss: name of the loss the task uses (``"cross_entropy"``, ``"mse"``).
        extras: free-form facts (normalisation stats, class names, ...).
    """

    name: str
    in_channels: int
    num_classes: int
    shape: Tuple[int, ...]
    task: str = "classification"
    split_sizes: Dict[str, int] = dataclasses.field(default_factory=dict)
    loss: str = "cross_entropy"
    extras: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Spatial dimensionality: 1 for sequences, 2 for images, 3 for volumes."""
        return len(self.shape)


class DatasetError(RuntimeError):
    """Base class of data errors; messages name the dataset, the file and the fix."""


class MissingDatasetError(DatasetError, FileNotFoundError):
    """The dataset's files are not where they were looked for."""


class CorruptDatasetError(DatasetError):
    """A dataset file exists but is truncated or not in the expected format."""


def default_root(root: Optional[str] = None) -> str:
    """``root`` if given, else ``$FLEXCORE_DATASETS``, else ``./datasets``."""
    if root:
        return os.path.expanduser(root)
    return os.path.expanduser(os.environ.get(ENV_ROOT, "datasets"))


def dataset_dir(root: Optional[str], name: str, subdir: str, expected: Sequence[str], source: str) -> str:
    """The dataset's folder ``<root>/<subdir>``, or a :class:`MissingDatasetError` saying what goes there.

    Args:
        root: user root (see :func:`default_root`).
        name: dataset name for the message.
        subdir: folder under the root holding the published files.
        expected: file names that must exist inside it.
        source: where to get them (URL or instructions).
    """
    base = os.path.join(default_root(root), subdir)
    missing = [f for f in expected if not os.path.exists(os.path.join(base, f))]
    if missing:
        raise MissingDatasetError(
            f"{name}: files not found in {os.path.abspath(base)!r}: missing {', '.join(missing)}. "
            f"Expected there: {', '.join(expected)}. Get them from {source} and unpack so that "
            f"{os.path.join(subdir, expected[0])} lies under the dataset root (set the root with "
            f"build_dataset.root / the dataset's `root` argument or ${ENV_ROOT}; default ./datasets)."
        )
    return base


def holdout_indices(num_samples: int, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split of ``range(num_samples)``; val has ``round(fraction*n)`` items."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(num_samples)
    n_val = int(round(fraction * num_samples))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class FakeDataset(Dataset):
    """Random inputs of the right shape and labels in range; for analysis and smoke tests."""

    def __init__(self, metadata: DatasetMetadata, length: int = 64, seed: int = 0):
        self.metadata = metadata
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        meta = self.metadata
        x = torch.randn((meta.in_channels, *meta.shape), generator=gen)
        if meta.task == "regression":
            y = torch.randn((meta.num_classes,), generator=gen).squeeze(0)
        elif meta.task == "sequence_classification":
            y = torch.randint(meta.num_classes, meta.shape, generator=gen)
        else:
            y = int(torch.randint(meta.num_classes, (1,), generator=gen))
        return x, y


@gin.configurable(module="datasets")
def build_dataset(
    name: str = gin.REQUIRED,
    split: str = "train",
    root: Optional[str] = None,
    fake: bool = False,
    fake_length: int = 64,
    **options: Any,
) -> Dataset:
    """Build a registered dataset by name; ``fake=True`` gives random data of its shape.

    Use gin scopes for per-split settings (``train/build_dataset.split = 'train'``);
    dataset options go to the dataset's own configurable (``CIFAR10.augment = 'resnet'``)
    or through ``options``.
    """
    from flexcore.registry import DATASETS

    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for dataset {name!r}; use one of {SPLITS}.")
    if fake:
        return FakeDataset(describe_dataset(name, **options), length=fake_length)
    return DATASETS.get(name)(root=root, split=split, **options)


def describe_dataset(name: str, **options: Any) -> DatasetMetadata:
    """Metadata of a registered dataset under the active gin bindings, without its files."""
    from flexcore.registry import DATASETS

    raw = DATASETS.get_raw(name)
    bound = gin.get_bindings(f"datasets.{DATASETS._resolve(name)}")  # noqa: SLF001
    return raw.describe(**{**bound, **options})

"""Dataset contract shared by every loader: metadata, roots, errors, splits, fake data.

A registered dataset is a ``torch.utils.data.Dataset`` subclass built as
``factory(root=None, split="train", **options)``. It exposes ``.metadata``
(:class:`DatasetMetadata`) and a classmethod ``describe(**options)`` that returns the
same metadata *without touching the disk*, so models can be built and analysed
without the data (``--fake-data``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import zipfile
import zlib
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import gin
import numpy as np
import torch
from torch.utils.data import Dataset

from flexcore.registry import DATASETS

__all__ = [
    "DatasetMetadata",
    "DatasetError",
    "MissingDatasetError",
    "CorruptDatasetError",
    "SPLITS",
    "default_root",
    "dataset_dir",
    "reading_file",
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
    # Set but empty (FLEXCORE_DATASETS=) counts as unset.
    return os.path.expanduser(os.environ.get(ENV_ROOT) or "datasets")


def _present(base: str, entry: Union[str, Sequence[str]]) -> Optional[str]:
    names = (entry,) if isinstance(entry, str) else tuple(entry)
    return next((n for n in names if os.path.exists(os.path.join(base, n))), None)


def _entry_text(entry: Union[str, Sequence[str]]) -> str:
    return entry if isinstance(entry, str) else " or ".join(entry)


def dataset_dir(
    root: Optional[str],
    name: str,
    subdir: Union[str, Sequence[str]],
    expected: Sequence[Union[str, Sequence[str]]],
    source: str,
) -> str:
    """The dataset's folder ``<root>/<subdir>``, or a :class:`MissingDatasetError` saying what goes there.

    Args:
        root: user root (see :func:`default_root`).
        name: dataset name for the message.
        subdir: folder under the root holding the published files, or several candidate
            folders tried in order (e.g. torchvision's ``MNIST/raw`` and a flat ``MNIST``).
        expected: file names that must exist inside it; an entry may be a tuple of
            alternatives (``("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")``).
        source: where to get them (URL or instructions).
    """
    candidates = [subdir] if isinstance(subdir, str) else list(subdir)
    base_root = default_root(root)
    looked = []
    for cand in candidates:
        base = os.path.join(base_root, cand)
        missing = [_entry_text(e) for e in expected if _present(base, e) is None]
        if not missing:
            return base
        state = f"missing {', '.join(missing)}" if os.path.isdir(base) else "no such folder"
        looked.append(f"{os.path.abspath(base)!r} ({state})")
    where = looked[0] if len(looked) == 1 else "any of " + "; ".join(looked)
    if os.path.isdir(base_root):
        entries = sorted(os.listdir(base_root))
        shown = ", ".join(entries[:10]) + (", ..." if len(entries) > 10 else "")
        where += f"; the root {os.path.abspath(base_root)!r} holds: {shown or '(nothing)'}"
    else:
        where += f"; the root {os.path.abspath(base_root)!r} does not exist"
    raise MissingDatasetError(
        f"{name}: files not found in {where}. "
        f"Expected there: {', '.join(_entry_text(e) for e in expected)}. Get them from {source} and "
        f"unpack so that {os.path.join(candidates[0], _entry_text(expected[0]))} lies under the dataset "
        f"root (set the root with build_dataset.root / the dataset's `root` argument or ${ENV_ROOT}; "
        f"default ./datasets)."
    )


# What a damaged file raises while being parsed: truncated gzip/zip/pickle, bad headers.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    zlib.error,
)


@contextlib.contextmanager
def reading_file(path: str, name: str, fix: str = "delete it and download or unpack it again") -> Iterator[None]:
    """Turn any parse error raised inside the block into a :class:`CorruptDatasetError` naming ``path``.

    Args:
        path: the file being read.
        name: dataset name for the message.
        fix: what the user should do about it.
    """
    try:
        yield
    except DatasetError:
        raise
    except _READ_ERRORS as exc:
        raise CorruptDatasetError(
            f"{name}: cannot read {os.path.abspath(path)!r}: the file is truncated or not in the expected "
            f"format ({type(exc).__name__}: {exc}). Fix: {fix}."
        ) from exc


def holdout_indices(
    num_samples: int, fraction: float, seed: int, labels: Optional[Sequence[int]] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split of ``range(num_samples)``; val has ``round(fraction*n)`` items.

    Args:
        num_samples: size of the set being split.
        fraction: share held out for validation, in (0, 1).
        seed: split seed; the same seed gives the same split on every machine and rank.
        labels: optional class labels ``(num_samples,)``; if given, the hold-out is stratified:
            each class contributes ``fraction`` of its samples (rounded so the total is still
            exactly ``round(fraction * n)``; leftover slots go to the classes with the largest
            remainders, ties broken by the seed).

    Returns:
        Sorted index arrays ``(train, val)``, disjoint, together ``range(num_samples)``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    n_val = int(round(fraction * num_samples))
    if labels is None:
        order = rng.permutation(num_samples)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    labels = np.asarray(labels)
    if labels.shape != (num_samples,):
        raise ValueError(f"labels must have shape ({num_samples},), got {labels.shape}")
    classes, counts = np.unique(labels, return_counts=True)
    ideal = counts * (n_val / num_samples)
    quota = np.floor(ideal).astype(np.int64)
    # Largest remainders first; a seeded shuffle before the stable sort breaks ties.
    shuffle = rng.permutation(len(classes))
    by_remainder = shuffle[np.argsort(-(ideal - quota)[shuffle], kind="stable")]
    quota[by_remainder[: n_val - int(quota.sum())]] += 1
    val = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(num_samples), val, assume_unique=True)
    return train, val


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
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for dataset {name!r}; use one of {SPLITS}.")
    if fake:
        metadata = describe_dataset(name, **options)
        _record_bindings_as_used(f"datasets.{DATASETS._resolve(name)}")  # noqa: SLF001
        return FakeDataset(metadata, length=fake_length)
    return DATASETS.get(name)(root=root, split=split, **options)


def _record_bindings_as_used(selector: str) -> None:
    """Put a configurable's bindings into gin's operative config as if it had been called.

    A fake dataset never calls the dataset's configurable, so the run's
    ``operative_config.gin`` would lose options that shape the model (``SpeechCommands.mfcc``,
    a ``resolution``) and no longer rebuild it. gin has no public call for this.
    """
    bound = gin.get_bindings(selector)
    if not bound:
        return
    scope = "/".join(gin.current_scope())
    with gin.config._OPERATIVE_CONFIG_LOCK:  # noqa: SLF001
        gin.config._OPERATIVE_CONFIG.setdefault((scope, selector), {}).update(bound)  # noqa: SLF001


def describe_dataset(name: str, **options: Any) -> DatasetMetadata:
    """Metadata of a registered dataset under the active gin bindings, without its files.

    Inside a gin scope (the trainer builds each split under ``train``/``val``/``test``)
    the scope's bindings count too, as they do when the dataset itself is built.
    """
    raw = DATASETS.get_raw(name)
    scope = gin.current_scope_str()
    selector = f"datasets.{DATASETS._resolve(name)}"  # noqa: SLF001
    bound = gin.get_bindings(f"{scope}/{selector}" if scope else selector)
    return raw.describe(**{**bound, **options})

"""CIFAR-10 and CIFAR-100 from their published "python version" pickle batches.

Layout under the dataset root (what the official tarballs unpack to)::

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Each batch is a pickled dict (bytes keys) with ``data`` ``(N, 3072)`` uint8 (1024 red, then
green, then blue values, rows top to bottom) and ``labels`` (CIFAR-100: ``fine_labels`` and
``coarse_labels``). The pickles are read with an unpickler that only builds numpy arrays, so
a tampered file cannot run code.
"""
from __future__ import annotations

import os
import pickle
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from flexcore.registry import DATASETS

from .base import reading_file
from .images import IMAGENET_STATS, ImageClassificationDataset, check_choice, replace_metadata

__all__ = ["CIFAR10", "CIFAR100", "load_python_pickle"]


def _numpy_globals() -> Dict[Tuple[str, str], Any]:
    import codecs

    try:  # numpy >= 2 keeps the implementation in numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed = {
        ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3 with protocol 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers and numpy arrays (no arbitrary code)."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a dataset batch only holds numpy arrays and lists"
            ) from None


def load_python_pickle(path: str, dataset: str) -> Dict[str, Any]:
    """A CIFAR-style pickled dict with its keys decoded to ``str``; damaged files raise CorruptDatasetError."""
    with reading_file(path, dataset):
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
        if not isinstance(obj, dict):
            raise ValueError(f"expected a pickled dict, found {type(obj).__name__}")
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _decode_names(names) -> Tuple[str, ...]:
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


class _CIFARBase(ImageClassificationDataset):
    """Shared reader of the CIFAR pickle batches."""

    SIZE = (32, 32)
    PUBLISHED_SIZES = {"train": 50_000, "test": 10_000}
    META_FILE = ""
    DOWNLOAD_SUBDIR = ""

    def _batch_files(self, part: str) -> List[str]:
        raise NotImplementedError

    def _label_key(self) -> str:
        return "labels"

    def _num_labels(self) -> int:
        return self.NUM_CLASSES

    def _read(self, folder: str, part: str) -> Tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        images, labels = [], []
        for filename in self._batch_files(part):
            path = os.path.join(folder, filename)
            batch = load_python_pickle(path, name)
            with reading_file(path, name):
                data = batch["data"]
                batch_labels = np.asarray(batch[self._label_key()], dtype=np.int64)
                if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                    raise ValueError(
                        f"'data' must be a uint8 array (N, 3072), found "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
                    )
                if batch_labels.shape != (data.shape[0],):
                    raise ValueError(f"{data.shape[0]} images but {batch_labels.size} labels")
                if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= self._num_labels()):
                    raise ValueError(f"labels outside 0..{self._num_labels() - 1}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        self.classes = self._read_class_names(folder)
        return np.concatenate(images), np.concatenate(labels)

    def _read_class_names(self, folder: str) -> Tuple[str, ...]:
        path = os.path.join(folder, self.META_FILE)
        if not os.path.exists(path):
            return self.CLASS_NAMES or ()
        meta = load_python_pickle(path, type(self).__name__)
        with reading_file(path, type(self).__name__):
            return _decode_names(meta[self._names_key()])

    def _names_key(self) -> str:
        return "label_names"


@DATASETS.register()
class CIFAR10(_CIFARBase):
    """CIFAR-10 (Krizhevsky 2009): 32x32 colour images, 10 classes, 50,000 train / 10,000 test."""

    SUBDIRS = ("cifar-10-batches-py",)
    SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version, cifar-10-python.tar.gz)"
    NUM_CLASSES = 10
    # The original normalises CIFAR with ImageNet statistics; "dataset" uses CIFAR-10's own.
    STATS = {
        "reference": IMAGENET_STATS,
        "dataset": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    }
    CUTOUT_LENGTH = 16  # DeVries & Taylor's CIFAR-10 setting
    CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    META_FILE = "batches.meta"
    DOWNLOADS = (
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
    )

    @classmethod
    def _expected_files(cls, part: str):
        batches = [f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]
        return batches + ["batches.meta"]

    def _batch_files(self, part: str) -> List[str]:
        return [f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]


@DATASETS.register()
class CIFAR100(_CIFARBase):
    """CIFAR-100: 32x32 colour images, 100 fine classes (or 20 coarse), 50,000 train / 10,000 test.

    Args:
        label_type: ``"fine"`` (100 classes, the paper's) or ``"coarse"`` (20 superclasses).
        (other arguments: see :class:`~flexcore.data.images.ImageClassificationDataset`)
    """

    SUBDIRS = ("cifar-100-python",)
    SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-100 python version, cifar-100-python.tar.gz)"
    NUM_CLASSES = 100
    STATS = {
        "reference": IMAGENET_STATS,
        "dataset": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    }
    CUTOUT_LENGTH = 8  # DeVries & Taylor's CIFAR-100 setting
    META_FILE = "meta"
    LABEL_TYPES = ("fine", "coarse")
    DOWNLOADS = (
        (
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        ),
    )

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        augment: Any = "none",
        resolution=None,
        interpolation: str = "bilinear",
        blur_sigma: float = 0.0,
        normalize: str = "reference",
        cutout_length: Optional[int] = None,
        val_fraction: Optional[float] = None,
        split_seed: int = 0,
        val_source: str = "holdout",
        download: bool = False,
        label_type: str = "fine",
    ):
        check_choice("CIFAR100", "label_type", label_type, self.LABEL_TYPES)
        self.label_type = label_type
        super().__init__(**self.base_options(locals()))

    def _extra_options(self) -> Dict[str, Any]:
        return {"label_type": self.label_type}

    @classmethod
    def describe(cls, label_type: str = "fine", **options: Any):
        check_choice("CIFAR100", "label_type", label_type, cls.LABEL_TYPES)
        meta = super().describe(**options)
        return replace_metadata(
            meta, num_classes=100 if label_type == "fine" else 20, extras={"label_type": label_type}
        )

    @classmethod
    def _expected_files(cls, part: str):
        return [part, "meta"]

    def _batch_files(self, part: str) -> List[str]:
        return [part]

    def _label_key(self) -> str:
        return f"{self.label_type}_labels"

    def _num_labels(self) -> int:
        return 100 if self.label_type == "fine" else 20

    def _names_key(self) -> str:
        return f"{self.label_type}_label_names"

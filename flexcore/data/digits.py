"""The handwritten digits embedded in scikit-learn: real data, no download; the quick start's dataset.

``sklearn.datasets.load_digits``: 1,797 grey 8x8 images with values 0..16 (the test part of
the UCI "optdigits" set), 10 classes. There is no published split, so train/val/test are a
seeded stratified partition. The whole set lives in memory as tensors, preprocessed once
when no augmentation is asked, so an epoch costs nothing but the model.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import dataclasses
import importlib.util
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from flexcore.registry import DATASETS

from .base import SPLITS, DatasetMetadata, holdout_indices
from .images import NORMALIZATIONS, VAL_SOURCES, check_choice
from .transforms import AUGMENTATIONS, Size, as_size, build_image_transform

__all__ = ["Digits", "SDigits", "load_digits_arrays"]

NUM_SAMPLES = 1797
# Mean and std of all 1,797 images scaled to [0, 1] (value / 16).
DIGITS_STATS = ((0.30526,), (0.37605,))


def load_digits_arrays() -> Tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float64 in 0..16, labels (1797,) int64)``, as ``sklearn.datasets.load_digits``.

    Reads the CSV that ships inside scikit-learn directly: importing ``sklearn.datasets``
    costs seconds (SciPy), the file a few milliseconds. Falls back to scikit-learn's loader
    if a future release moves the file.
    """
    spec = importlib.util.find_spec("sklearn")
    path = None
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    if path and os.path.exists(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        images, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:  # pragma: no cover - depends on the installed scikit-learn layout
        from sklearn.datasets import load_digits

        raw = load_digits()
        images, labels = raw.images, raw.target.astype(np.int64)
    if images.shape != (NUM_SAMPLES, 8, 8) or images.min() < 0 or images.max() > 16:
        raise RuntimeError(f"scikit-learn's digits data has shape {images.shape}; expected (1797, 8, 8) in 0..16")
    return images, labels


def _partition(n: int, val_fraction: float, test_fraction: float) -> Dict[str, int]:
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    if n_test <= 0 or n_val <= 0 or n_test + n_val >= n:
        raise ValueError(
            f"Digits: val_fraction={val_fraction} and test_fraction={test_fraction} must each leave "
            f"at least one sample and together less than the {n} samples"
        )
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


@DATASETS.register()
class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), embedded: no files, no download.

    Args:
        root: ignored (the data ships inside scikit-learn); accepted for the common contract.
        split: ``"train"``, ``"val"`` or ``"test"``, a seeded stratified partition of the 1,797 images.
        augment: training augmentation (see :mod:`flexcore.data.transforms`); only ``train`` is augmented.
        resolution: upsample (or resize) every split to this size, e.g. 16 or 32; ``None`` keeps 8x8.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        blur_sigma: Gaussian blur before resizing when > 0.
        normalize: ``"reference"``/``"dataset"`` (the same here: the set's own mean and std) or ``"none"``.
        val_fraction: share of all images in ``val``.
        test_fraction: share of all images in ``test``.
        split_seed: seed of the partition.
        val_source: ``"holdout"``; ``"test"`` makes ``val`` the test part (for parity-style runs).
        download: ignored (nothing to download).
    """

    CLASS_NAMES = tuple(str(d) for d in range(10))

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        augment: Any = "none",
        resolution: Optional[Size] = None,
        interpolation: str = "bilinear",
        blur_sigma: float = 0.0,
        normalize: str = "reference",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        val_source: str = "holdout",
        download: bool = False,
    ):
        check_choice("Digits", "split", split, SPLITS)
        if isinstance(augment, str):
            check_choice("Digits", "augment", augment.lower(), AUGMENTATIONS)
        self.split = split
        self.metadata = self.describe(
            resolution=resolution, normalize=normalize, val_fraction=val_fraction,
            test_fraction=test_fraction, val_source=val_source,
        )
        raw_images, labels = load_digits_arrays()
        images = torch.as_tensor(raw_images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # (N, 1, 8, 8)
        self.indices = self._split_indices(labels, split, val_fraction, test_fraction, split_seed, val_source)
        mean, std = self._stats(normalize)
        augmenting = split == "train" and augment is not None and str(augment).lower() != "none"
        self.transform = build_image_transform(
            mean, std, (8, 8), augment=augment if augmenting else "none", resolution=resolution,
            interpolation=interpolation, blur_sigma=blur_sigma,
        )
        subset = images[torch.as_tensor(self.indices)]
        # Without augmentation every stage is deterministic and batched: run it once.
        self.inputs = subset if augmenting else self.transform(subset).contiguous()
        self._augmenting = augmenting
        self.targets = torch.as_tensor(labels[self.indices])
        self._target_list = self.targets.tolist()
        self.classes = self.CLASS_NAMES

    @staticmethod
    def _split_indices(labels, split, val_fraction, test_fraction, seed, val_source) -> np.ndarray:
        sizes = _partition(len(labels), val_fraction, test_fraction)
        rest, test = holdout_indices(len(labels), test_fraction, seed, labels)
        if split == "test" or (split == "val" and val_source == "test"):
            return test
        fraction = sizes["val"] / len(rest)
        train, val = holdout_indices(len(rest), fraction, seed + 1, labels[rest])
        if val_source == "test" and split == "train":
            return rest
        return rest[train] if split == "train" else rest[val]

    @classmethod
    def _stats(cls, normalize: str) -> Tuple[Optional[Tuple[float, ...]], Optional[Tuple[float, ...]]]:
        check_choice("Digits", "normalize", normalize, NORMALIZATIONS)
        return (None, None) if normalize == "none" else DIGITS_STATS

    @classmethod
    def describe(
        cls,
        resolution: Optional[Size] = None,
        normalize: str = "reference",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        val_source: str = "holdout",
        **_ignored: Any,
    ) -> DatasetMetadata:
        """Metadata for these options (``root``, ``augment``, ... are ignored)."""
        check_choice("Digits", "val_source", val_source, VAL_SOURCES)
        hw = as_size(resolution) if resolution is not None else (8, 8)
        mean, std = cls._stats(normalize)
        sizes = _partition(NUM_SAMPLES, val_fraction, test_fraction)
        if val_source == "test":
            sizes = {"train": sizes["train"] + sizes["val"], "val": sizes["test"], "test": sizes["test"]}
        return DatasetMetadata(
            name="Digits",
            in_channels=1,
            num_classes=10,
            shape=hw,
            split_sizes=sizes,
            extras={
                "native_size": (8, 8),
                "resolution": hw,
                "normalize": normalize,
                "mean": mean,
                "std": std,
                "val_source": val_source,
                "class_names": cls.CLASS_NAMES,
            },
        )

    def __len__(self) -> int:
        return len(self._target_list)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        x = self.inputs[index]
        if self._augmenting:
            x = self.transform(x)
        return x, self._target_list[index]

    def __repr__(self) -> str:
        shape = (self.metadata.in_channels, *self.metadata.shape)
        return f"Digits(split={self.split!r}, samples={len(self)}, shape={shape}, transform={self.transform!r})"


@DATASETS.register(aliases=("SequentialDigits",))
class SDigits(Digits):
    """The digits read pixel by pixel as a (1, 64) sequence: an embedded sMNIST / pMNIST stand-in.

    Args:
        permutation_seed: ``None`` reads row by row (as sMNIST); an int reads the pixels in one
            fixed seeded permutation (as pMNIST, :func:`flexcore.data.sequential_images.permutation`),
            the same for every split.
        (other arguments: see :class:`Digits`; ``resolution`` 16 gives 256 steps)
    """

    def __init__(self, root: Optional[str] = None, split: str = "train", permutation_seed: Optional[int] = None,
                 **options: Any):
        super().__init__(root, split, **options)
        self.metadata = self.describe(permutation_seed=permutation_seed, **options)
        self.permutation = None
        if permutation_seed is not None:
            from .sequential_images import permutation  # noqa: PLC0415 - that module imports the image sets

            self.permutation = torch.as_tensor(permutation(self.metadata.shape[0], int(permutation_seed)))

    @classmethod
    def describe(cls, permutation_seed: Optional[int] = None, **options: Any) -> DatasetMetadata:
        """Metadata for these options: shape ``(H * W,)``, one channel."""
        image = super().describe(**options)
        extras = {**image.extras, "permutation_seed": permutation_seed}
        return dataclasses.replace(image, name="SDigits", shape=(image.shape[0] * image.shape[1],), extras=extras)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        x, y = super().__getitem__(index)
        x = x.reshape(1, -1)
        return (x if self.permutation is None else x[:, self.permutation]), y

    def __repr__(self) -> str:
        order = "row-major" if self.permutation is None else f"permuted (seed {self.metadata.extras['permutation_seed']})"
        return f"SDigits(split={self.split!r}, samples={len(self)}, shape={(1, *self.metadata.shape)}, {order})"

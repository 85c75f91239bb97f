"""Shared machinery of the file-backed image datasets: splits, metadata, transforms, downloads.

A subclass says where its published files live and how to parse them (``_expected_files``,
``_read``); :class:`ImageClassificationDataset` turns that into the dataset contract:
``train``/``val``/``test`` splits (``val`` a seeded, stratified hold-out of the training
files unless ``val_source="test"``), the per-sample transform pipeline, metadata that
``describe()`` reproduces without the files, and opt-in downloads.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import SPLITS, DatasetMetadata, MissingDatasetError, dataset_dir, default_root, holdout_indices
from .download import download_files
from .transforms import AUGMENTATIONS, Size, as_size, build_image_transform

__all__ = [
    "VAL_SOURCES",
    "NORMALIZATIONS",
    "ImageClassificationDataset",
    "check_choice",
]

VAL_SOURCES = ("holdout", "test")
NORMALIZATIONS = ("reference", "dataset", "none")
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

Stats = Tuple[Tuple[float, ...], Tuple[float, ...]]


def check_choice(dataset: str, option: str, value: Any, choices: Sequence[Any]) -> None:
    """ValueError naming the dataset and option unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{dataset}: {option}={value!r} is not one of {tuple(choices)}")


class ImageClassificationDataset(Dataset):
    """Images ``(N, C, H, W)`` uint8 (in memory or memory-mapped) with class labels, transformed per sample.

    Args:
        root: dataset root (else ``$FLEXCORE_DATASETS``, else ``./datasets``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        augment: training augmentation (``"none"``, ``"resnet"``, ``"standard"``, ``"cutout"`` or a
            callable, see :mod:`flexcore.data.transforms`); only the ``train`` split is augmented.
        resolution: resize every split to this size (int or ``(h, w)``) after augmenting, for
            cross-resolution experiments; ``None`` keeps the native size.
        interpolation: ``"bilinear"`` (antialiased) or ``"nearest"`` resizing.
        blur_sigma: Gaussian blur applied first when > 0 (kernel ``2 ceil(3 sigma) + 1``).
        normalize: ``"reference"`` (the original's statistics), ``"dataset"`` (the dataset's
            own training statistics) or ``"none"``.
        cutout_length: hole side of the Cutout augmentation (default: the dataset's).
        val_fraction: share of the training files held out as ``val`` (default: the dataset's).
        split_seed: seed of the stratified hold-out; every rank and run gets the same split.
        val_source: ``"holdout"`` (default, honest) or ``"test"``: ``val`` *is* the test set and
            ``train`` all training files, as in the original (it selected models on the test set).
        download: fetch the published files if they are missing (datasets with public URLs only).
    """

    SUBDIRS: Tuple[str, ...] = ()
    SOURCE = ""
    IN_CHANNELS = 3
    NUM_CLASSES = 10
    SIZE: Tuple[int, int] = (32, 32)
    PUBLISHED_SIZES: Dict[str, int] = {}
    STATS: Dict[str, Stats] = {}
    DEFAULT_VAL_FRACTION = 0.1
    CUTOUT_LENGTH: Optional[int] = None
    RESNET_CUTOUT = False
    CLASS_NAMES: Optional[Tuple[str, ...]] = None
    DOWNLOADS: Tuple[Tuple[str, str, Optional[str]], ...] = ()
    DOWNLOAD_SUBDIR = ""

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        augment: Any = "none",
        resolution: Optional[Size] = None,
        interpolation: str = "bilinear",
        blur_sigma: float = 0.0,
        normalize: str = "reference",
        cutout_length: Optional[int] = None,
        val_fraction: Optional[float] = None,
        split_seed: int = 0,
        val_source: str = "holdout",
        download: bool = False,
    ):
        name = type(self).__name__
        check_choice(name, "split", split, SPLITS)
        check_choice(name, "val_source", val_source, VAL_SOURCES)
        if isinstance(augment, str):
            check_choice(name, "augment", augment.lower(), AUGMENTATIONS)
        self.split = split
        self.val_fraction = self.DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
        self.metadata = type(self).describe(
            resolution=resolution, normalize=normalize, val_fraction=self.val_fraction, val_source=val_source,
            **self._extra_options(),
        )
        mean, std = self._stats(normalize)
        self.transform = build_image_transform(
            mean, std, self.SIZE,
            augment=augment if split == "train" else "none",
            resolution=resolution, interpolation=interpolation, blur_sigma=blur_sigma,
            cutout_length=cutout_length or self.CUTOUT_LENGTH, resnet_cutout=self.RESNET_CUTOUT,
        )
        part = "test" if split == "test" or (split == "val" and val_source == "test") else "train"
        self.root = self._locate(root, part, download)
        images, labels = self._read(self.root, part)
        if type(images) is np.ndarray:  # in memory (not memory-mapped): index as a tensor
            images = torch.from_numpy(images if images.flags.writeable else images.copy())
        self.images = images
        self.indices: Optional[np.ndarray] = None
        if part == "train" and val_source == "holdout":
            train_idx, val_idx = holdout_indices(len(labels), self.val_fraction, split_seed, labels)
            self.indices = train_idx if split == "train" else val_idx
            labels = labels[self.indices]
        self.targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self._target_list: List[int] = self.targets.tolist()

    @staticmethod
    def base_options(values: Dict[str, Any]) -> Dict[str, Any]:
        """This constructor's arguments picked from a subclass constructor's ``locals()``.

        Subclasses with extra options repeat the full signature (so gin and ``help`` show
        every parameter) and forward with ``super().__init__(**self.base_options(locals()))``.
        """
        return {name: values[name] for name in _BASE_PARAMETERS}

    # -- what subclasses provide ---------------------------------------------------------------
    def _extra_options(self) -> Dict[str, Any]:
        """Options of a subclass that ``describe`` needs (set as attributes before ``__init__``)."""
        return {}

    @classmethod
    def _expected_files(cls, part: str) -> List[Union[str, Tuple[str, ...]]]:
        """Files (or tuples of alternatives) inside the dataset folder needed for ``part``."""
        raise NotImplementedError

    def _read(self, folder: str, part: str) -> Tuple[Any, np.ndarray]:
        """``(images (N, C, H, W) uint8 ndarray or tensor, labels (N,) int)`` of ``part`` ("train"/"test")."""
        raise NotImplementedError

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """Last step on the transformed image (the sequential variants flatten here)."""
        return x

    @classmethod
    def _sample_shape(cls, hw: Tuple[int, int]) -> Tuple[Tuple[int, ...], int]:
        """(shape, in_channels) of a finished sample for images of size ``hw``."""
        return hw, cls.IN_CHANNELS

    # -- metadata ------------------------------------------------------------------------------
    @classmethod
    def _stats(cls, normalize: str) -> Tuple[Optional[Tuple[float, ...]], Optional[Tuple[float, ...]]]:
        check_choice(cls.__name__, "normalize", normalize, NORMALIZATIONS)
        if normalize == "none":
            return None, None
        return cls.STATS.get(normalize) or cls.STATS["reference"]

    @classmethod
    def _split_sizes(cls, val_fraction: Optional[float], val_source: str) -> Dict[str, int]:
        n_train, n_test = cls.PUBLISHED_SIZES["train"], cls.PUBLISHED_SIZES["test"]
        if val_source == "test":
            return {"train": n_train, "val": n_test, "test": n_test}
        fraction = cls.DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
        n_val = int(round(fraction * n_train))
        return {"train": n_train - n_val, "val": n_val, "test": n_test}

    @classmethod
    def describe(
        cls,
        resolution: Optional[Size] = None,
        normalize: str = "reference",
        val_fraction: Optional[float] = None,
        val_source: str = "holdout",
        **_ignored: Any,
    ) -> DatasetMetadata:
        """Metadata for these options, without reading files (other options are ignored).

        ``split_sizes`` are the published sizes (after the hold-out), not those of the files found.
        """
        check_choice(cls.__name__, "val_source", val_source, VAL_SOURCES)
        hw = as_size(resolution) if resolution is not None else tuple(cls.SIZE)
        mean, std = cls._stats(normalize)
        shape, channels = cls._sample_shape(hw)
        extras: Dict[str, Any] = {
            "native_size": tuple(cls.SIZE),
            "resolution": hw,
            "normalize": normalize,
            "mean": mean,
            "std": std,
            "val_source": val_source,
        }
        if cls.CLASS_NAMES is not None:
            extras["class_names"] = cls.CLASS_NAMES
        return DatasetMetadata(
            name=cls.__name__,
            in_channels=channels,
            num_classes=cls.NUM_CLASSES,
            shape=tuple(shape),
            split_sizes=cls._split_sizes(val_fraction, val_source),
            extras=extras,
        )

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def _source_text(cls) -> str:
        if cls.DOWNLOADS:
            return f"{cls.SOURCE} (or let it download: --gin \"{cls.__name__}.download = True\")"
        return cls.SOURCE

    def _locate(self, root: Optional[str], part: str, download: bool) -> str:
        expected = self._expected_files(part)
        name = type(self).__name__
        try:
            return dataset_dir(root, name, self.SUBDIRS, expected, self._source_text())
        except MissingDatasetError:
            if not download:
                raise
            if not self.DOWNLOADS:
                raise MissingDatasetError(
                    f"{name} cannot be downloaded automatically; get it from {self.SOURCE}"
                ) from None
        download_files(name, self.DOWNLOADS, os.path.join(default_root(root), self.DOWNLOAD_SUBDIR))
        return dataset_dir(root, name, self.SUBDIRS, expected, self._source_text())

    # -- Dataset -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._target_list)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        j = int(self.indices[index]) if self.indices is not None else index
        image = self.images[j]
        if isinstance(image, np.ndarray):  # memory-mapped arrays
            image = torch.from_numpy(np.array(image))
        return self._finish(self.transform(image)), self._target_list[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, samples={len(self)}, root={self.root!r}, "
            f"shape={(self.metadata.in_channels, *self.metadata.shape)}, transform={self.transform!r})"
        )


_BASE_PARAMETERS = tuple(inspect.signature(ImageClassificationDataset.__init__).parameters)[1:]


def replace_metadata(meta: DatasetMetadata, **changes: Any) -> DatasetMetadata:
    """A copy of ``meta`` with some fields changed (extras merged, not replaced)."""
    extras = {**meta.extras, **changes.pop("extras", {})}
    return dataclasses.replace(meta, extras=extras, **changes)

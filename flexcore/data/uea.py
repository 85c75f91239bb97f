"""UEA multivariate archive (``.ts`` files): CharacterTrajectories, with irregular sampling.

Layout under the root: ``CharacterTrajectories/CharacterTrajectories_{TRAIN,TEST}.ts``
(the per-dataset zip of timeseriesclassification.com), or the 2018 archive's
``Multivariate_ts/CharacterTrajectories/`` folder as unpacked.
"""
from __future__ import annotations

import os
from typing import ClassVar, Dict, List, Optional, Tuple

import numpy as np
import torch

from flexcore.registry import DATASETS

from .download import download_files
from .base import (
    SPLITS,
    CorruptDatasetError,
    DatasetMetadata,
    MissingDatasetError,
    dataset_dir,
    default_root,
    holdout_indices,
)
from .images import check_choice
from .timeseries import NORMALIZATIONS, IrregularSequenceDataset, normalization_stats, stratified_split
from .ts_format import TsFile, read_ts

__all__ = ["UEAClassification", "CharacterTrajectories"]

SPLIT_SCHEMES = ("standard", "original")


def _original_split_sizes(total: int) -> Dict[str, int]:
    """Sizes of the original's stratified 70/15/15 split (sklearn floors the train share)."""
    train = int(np.floor(0.7 * total))
    val = int(np.floor(0.5 * (total - train)))
    return {"train": train, "val": val, "test": total - train - val}


class UEAClassification(IrregularSequenceDataset):
    """A classification problem of the UEA archive, with the drop / normalise / mask pipeline.

    Subclasses name the problem and its published facts (class attributes), so
    :meth:`describe` needs no file.

    Args:
        root: dataset root.
        split: ``"train"``, ``"val"`` or ``"test"``.
        drop_rate: percent of time steps dropped per sample (irregular sampling; adds a mask channel).
        drop_seed: seed of the drop pattern (the original's generator seed by default).
        normalize: ``"channel"`` (default), ``"time_step"`` (the original code's quirk) or ``"none"``.
        split_scheme: ``"standard"``: the archive's TEST file is the test split and ``val`` a
            seeded hold-out of TRAIN; ``"original"``: TRAIN and TEST concatenated and split
            70/15/15 (stratified, as the original).
        val_fraction, split_seed: the stratified hold-out of the standard scheme.
        length: pad every series to this length by repeating its last value (default: the
            archive's longest series).
        download: fetch the problem's zip into the root if the files are missing.
    """

    PROBLEM: ClassVar[str]
    CHANNELS: ClassVar[int]
    NUM_CLASSES: ClassVar[int]
    LENGTH: ClassVar[int]  # longest series over TRAIN and TEST
    TRAIN_SIZE: ClassVar[int]
    TEST_SIZE: ClassVar[int]

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        drop_rate: float = 0.0,
        drop_seed: int = 56789,
        normalize: str = "channel",
        split_scheme: str = "standard",
        val_fraction: float = 0.15,
        split_seed: int = 0,
        length: Optional[int] = None,
        download: bool = False,
    ):
        check_choice(type(self).__name__, "split", split, SPLITS)
        metadata = self.describe(drop_rate=drop_rate, normalize=normalize, split_scheme=split_scheme,
                                 val_fraction=val_fraction, length=length)
        length = metadata.shape[0]
        base = self._locate(root, download)
        files = [read_ts(os.path.join(base, name)) for name in self.file_names()]
        features, labels, names = self._assemble(files, length)
        splits = self._split(len(files[0].series), labels, split_scheme, val_fraction, split_seed)
        stats = normalization_stats(features, splits["train"], normalize, drop_rate=drop_rate, drop_seed=drop_seed)
        super().__init__(features, labels, splits[split], stats, 1.0, drop_rate, drop_seed)
        self.split = split
        self.class_names = names  # archive label of each class index, by first appearance
        self.metadata = metadata

    @classmethod
    def file_names(cls) -> Tuple[str, str]:
        return f"{cls.PROBLEM}_TRAIN.ts", f"{cls.PROBLEM}_TEST.ts"

    @classmethod
    def url(cls) -> str:
        return f"https://www.timeseriesclassification.com/aeon-toolkit/{cls.PROBLEM}.zip"

    @classmethod
    def describe(
        cls,
        drop_rate: float = 0.0,
        normalize: str = "channel",
        split_scheme: str = "standard",
        val_fraction: float = 0.15,
        length: Optional[int] = None,
        **_ignored,
    ) -> DatasetMetadata:
        """Metadata without reading files (the archive's published sizes)."""
        check_choice(cls.__name__, "normalize", normalize, NORMALIZATIONS)
        check_choice(cls.__name__, "split_scheme", split_scheme, SPLIT_SCHEMES)
        if not 0 <= drop_rate < 100:
            raise ValueError(f"{cls.PROBLEM}: drop_rate is a percentage in [0, 100), got {drop_rate}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"{cls.__name__}: val_fraction must be in (0, 1), got {val_fraction}")
        if split_scheme == "original":
            sizes = _original_split_sizes(cls.TRAIN_SIZE + cls.TEST_SIZE)
        else:
            n_val = int(round(val_fraction * cls.TRAIN_SIZE))
            sizes = {"train": cls.TRAIN_SIZE - n_val, "val": n_val, "test": cls.TEST_SIZE}
        return DatasetMetadata(
            name=cls.__name__,
            in_channels=cls.CHANNELS + (1 if drop_rate > 0 else 0),
            num_classes=cls.NUM_CLASSES,
            shape=(cls.LENGTH if length is None else int(length),),
            split_sizes=sizes,
            extras={"problem": cls.PROBLEM},
        )

    @classmethod
    def _locate(cls, root: Optional[str], download: bool) -> str:
        expected = list(cls.file_names())
        source = f"{cls.url()} (the UEA archive; or let it download: --gin \"{cls.__name__}.download = True\")"
        # the per-problem zip's layout, then the unpacked 2018 archive's
        folders = (cls.PROBLEM, os.path.join("Multivariate_ts", cls.PROBLEM))
        try:
            return dataset_dir(root, cls.PROBLEM, folders, expected, source)
        except MissingDatasetError:
            if not download:
                raise
        base = os.path.join(default_root(root), cls.PROBLEM)
        # The archive publishes no checksum (its zips are re-packed over time); the zip's own
        # CRC-32 per member and the .ts parser catch a damaged download instead.
        download_files(cls.PROBLEM, ((cls.url(), f"{cls.PROBLEM}.zip", None),), base, members=expected)
        return dataset_dir(root, cls.PROBLEM, cls.PROBLEM, expected, source)

    @classmethod
    def _assemble(cls, files: List[TsFile], length: int) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
        """Pad, stack and label TRAIN then TEST; labels numbered by first appearance (as the original)."""
        series = [s for f in files for s in f.series]
        raw_labels = [label for f in files for label in f.labels]
        for f, name in zip(files, cls.file_names()):
            if f.channels != cls.CHANNELS:
                raise CorruptDatasetError(f"{name}: {f.channels} dimensions, {cls.PROBLEM} has {cls.CHANNELS}.")
            if len(f.labels) != len(f.series):
                raise CorruptDatasetError(
                    f"{name}: cases without class labels; {cls.PROBLEM} is a classification set."
                )
        longest = max(s.shape[1] for s in series)
        if longest > length:
            raise ValueError(
                f"{cls.PROBLEM}: a series has {longest} steps, more than length={length}; pass length={longest}."
            )
        names: List[str] = list(dict.fromkeys(raw_labels))
        if len(names) > cls.NUM_CLASSES:
            raise CorruptDatasetError(
                f"{cls.PROBLEM}: {len(names)} distinct labels, the problem has {cls.NUM_CLASSES}."
            )
        index = {name: i for i, name in enumerate(names)}
        padded = np.stack([np.pad(s, ((0, 0), (0, length - s.shape[1])), mode="edge") for s in series])
        labels = torch.tensor([index[label] for label in raw_labels], dtype=torch.int64)
        return torch.from_numpy(padded).float(), labels, names

    @staticmethod
    def _split(
        n_train: int, labels: torch.Tensor, scheme: str, val_fraction: float, seed: int
    ) -> Dict[str, np.ndarray]:
        if scheme == "original":
            return dict(zip(SPLITS, stratified_split(labels.numpy())))
        train, val = holdout_indices(n_train, val_fraction, seed, labels=labels[:n_train].numpy())
        return {"train": train, "val": val, "test": np.arange(n_train, len(labels))}

    def __repr__(self) -> str:
        meta = self.metadata
        shape = (meta.in_channels, meta.shape[0])
        return f"{type(self).__name__}(split={self.split!r}, samples={len(self)}, input={shape})"


@DATASETS.register(aliases=("CharTrajectories",))
class CharacterTrajectories(UEAClassification):
    """Pen-tip velocity trajectories of 20 handwritten characters (3 channels, up to 182 steps)."""

    PROBLEM = "CharacterTrajectories"
    CHANNELS = 3
    NUM_CLASSES = 20
    LENGTH = 182
    TRAIN_SIZE = 1422
    TEST_SIZE = 1436

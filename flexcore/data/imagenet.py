"""Downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017) at 8, 16, 32 or 64 px, from the npz batches.

Layout under the dataset root, for ``k`` in 8, 16, 32, 64 (the zips from image-net.org,
"Download downsampled images", npz format; unzipped flat or into their own subfolders)::

    Imagenet32/  train_data_batch_1.npz .. train_data_batch_10.npz  val_data.npz
    Imagenet32/  Imagenet32_train_npz/train_data_batch_*.npz  Imagenet32_val_npz/val_data.npz

Each npz holds ``data`` ``(N, 3*k*k)`` uint8 (red plane, green plane, blue plane, each
row-major), ``labels`` 1..1000 and, in training batches, ``mean`` (unused: the original
normalises with ImageNet statistics). The published ``val_data`` is the ``test`` split, as
in the original; ``val`` is a hold-out of the training batches.

The npz batches are compressed zip members that cannot be memory-mapped, so on first use
each split is converted once to ``.npy`` arrays in a cache folder, named by a key of their
parameters (resolution, split, source files' names, sizes and mtimes); later runs map
them from disk (or load them into RAM with ``in_ram=True``). The conversion shows a
progress bar and, if interrupted, resumes after the last converted batch.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import List, Optional, Tuple

import numpy as np
from tqdm.auto import tqdm

from flexcore.registry import DATASETS
from flexcore.utils import comm

from .base import DatasetError, MissingDatasetError, dataset_dir, default_root, reading_file
from .images import IMAGENET_STATS, ImageClassificationDataset

__all__ = ["ImageNet8", "ImageNet16", "ImageNet32", "ImageNet64", "CACHE_VERSION"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
TRAIN_BATCHES = 10


class _DownsampledImageNet(ImageClassificationDataset):
    """Shared reader; subclasses fix the resolution ``K``.

    Args:
        in_ram: load the whole split into memory instead of mapping the cache file.
        cache_dir: folder for the converted arrays (default ``<dataset folder>/flexcore_cache``).
        (other arguments: see :class:`~flexcore.data.images.ImageClassificationDataset`)
    """

    K = 32
    IN_CHANNELS = 3
    NUM_CLASSES = 1000
    PUBLISHED_SIZES = {"train": 1_281_167, "test": 50_000}
    STATS = {"reference": IMAGENET_STATS}
    DEFAULT_VAL_FRACTION = 0.01  # 12,812 images, ~13 per class
    SOURCE = (
        "https://image-net.org/download-images.php (login required): 'Downsampled ImageNet "
        "{k}x{k}', npz format, Imagenet{k}_train_npz.zip and Imagenet{k}_val_npz.zip; unzip both "
        "into <root>/Imagenet{k}/ (flat or as their Imagenet{k}_*_npz/ subfolders)"
    )

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        augment="none",
        resolution=None,
        interpolation: str = "bilinear",
        blur_sigma: float = 0.0,
        normalize: str = "reference",
        cutout_length: Optional[int] = None,
        val_fraction: Optional[float] = None,
        split_seed: int = 0,
        val_source: str = "holdout",
        download: bool = False,
        in_ram: bool = False,
        cache_dir: Optional[str] = None,
    ):
        self.in_ram = bool(in_ram)
        self.cache_dir = cache_dir
        super().__init__(**self.base_options(locals()))

    # Spawned DataLoader workers and DDP processes receive the dataset pickled: send the
    # cache file's path, not a copy of a memory-mapped split (gigabytes).
    def __getstate__(self):
        state = self.__dict__.copy()
        if isinstance(self.images, np.memmap):
            state["images"] = ("memmap", self.images.filename)
        return state

    def __setstate__(self, state):
        images = state["images"]
        if isinstance(images, tuple) and images[0] == "memmap":
            state["images"] = np.load(images[1], mmap_mode="r")
        self.__dict__.update(state)

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def _file_names(cls, part: str) -> List[str]:
        if part == "train":
            return [f"train_data_batch_{i}.npz" for i in range(1, TRAIN_BATCHES + 1)]
        return ["val_data.npz"]

    @classmethod
    def _expected_files(cls, part: str):
        return cls._file_names(part)

    @classmethod
    def _source_text(cls) -> str:
        return cls.SOURCE.format(k=cls.K)

    @staticmethod
    def _find(folder: str, name: str) -> Optional[str]:
        """``folder/name``, else ``folder/<an unzipped *_npz subfolder>/name``."""
        direct = os.path.join(folder, name)
        if os.path.exists(direct):
            return direct
        nested = sorted(glob.glob(os.path.join(folder, "*_npz", name)))
        return nested[0] if nested else None

    def _locate(self, root: Optional[str], part: str, download: bool) -> str:
        folder = os.path.join(default_root(root), self.SUBDIRS[0])
        paths = [self._find(folder, n) for n in self._file_names(part)]
        if all(paths):
            self._paths = paths
            return folder
        if download:
            raise MissingDatasetError(
                f"{type(self).__name__} cannot be downloaded automatically (image-net.org needs a login); "
                f"get it from {self._source_text()}"
            )
        # Raises the standard message listing the folder, the expected files and the source.
        dataset_dir(root, type(self).__name__, self.SUBDIRS, self._file_names(part), self._source_text())
        raise AssertionError("unreachable: dataset_dir found files that _find did not")  # pragma: no cover

    # -- conversion cache ----------------------------------------------------------------------
    def _cache_paths(self, folder: str, part: str) -> Tuple[str, str]:
        sources = [(os.path.relpath(p, folder), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in self._paths]
        params = {"version": CACHE_VERSION, "resolution": self.K, "part": part, "sources": sources}
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        cache = self.cache_dir or os.path.join(folder, "flexcore_cache")
        stem = os.path.join(cache, f"imagenet{self.K}_{part}_{key}")
        return stem + ".images.npy", stem + ".labels.npy"

    def _read_npz(self, path: str) -> Tuple[np.ndarray, np.ndarray]:
        name, k = type(self).__name__, self.K
        with reading_file(path, name):
            with np.load(path, allow_pickle=False) as npz:
                data, labels = npz["data"], np.asarray(npz["labels"]).astype(np.int64).ravel()
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * k * k:
                raise ValueError(
                    f"'data' must be uint8 (N, {3 * k * k}) for {k}x{k} images, found {data.dtype} {data.shape}"
                    + (" (is this the right resolution's file?)" if data.ndim == 2 else "")
                )
            if len(labels) != len(data):
                raise ValueError(f"{len(data)} images but {len(labels)} labels")
            if labels.size and (labels.min() < 1 or labels.max() > 1000):
                raise ValueError("labels outside 1..1000")
        return data.reshape(-1, 3, k, k), labels - 1

    def _convert(self, images_path: str, labels_path: str) -> None:
        """Write the split's arrays once, batch by batch into memmaps; an interrupted conversion resumes.

        ``<cache>.partial.npy`` files and a ``.progress.json`` (batches done) survive an
        interruption; the next start continues after the last finished batch. The finished
        arrays are renamed into place, images last (their presence marks a complete cache).
        """
        partial_images, partial_labels = images_path + ".partial.npy", labels_path + ".partial.npy"
        progress_path = images_path + ".progress.json"
        counts, done = self._progress(progress_path, partial_images, partial_labels)
        os.makedirs(os.path.dirname(images_path), exist_ok=True)
        total, mode = sum(counts), "r+" if done else "w+"
        try:
            images = np.lib.format.open_memmap(partial_images, mode=mode, dtype=np.uint8,
                                               shape=(total, 3, self.K, self.K))
            labels = np.lib.format.open_memmap(partial_labels, mode=mode, dtype=np.int16, shape=(total,))
            if done:
                logger.info("%s: resuming the conversion after batch %d of %d", type(self).__name__, done, len(counts))
            with tqdm(total=total, initial=sum(counts[:done]), unit="img", desc=f"{type(self).__name__} cache",
                      dynamic_ncols=True) as bar:
                for i in range(done, len(counts)):
                    start, n = sum(counts[:i]), counts[i]
                    images[start : start + n], labels[start : start + n] = self._read_npz(self._paths[i])
                    images.flush()
                    labels.flush()
                    _write_json(progress_path, {"counts": counts, "done": i + 1})
                    bar.update(n)
            del images, labels
            os.replace(partial_labels, labels_path)
            os.replace(partial_images, images_path)
            os.remove(progress_path)
        except DatasetError:
            # A damaged source file: once replaced, its size and mtime give another cache key.
            for leftover in (partial_images, partial_labels, progress_path):
                if os.path.exists(leftover):
                    os.remove(leftover)
            raise

    def _progress(self, progress_path: str, *partials: str) -> Tuple[List[int], int]:
        """``(images per source file, batches already converted)``, from an earlier interrupted run if any."""
        try:
            with open(progress_path, encoding="utf-8") as f:
                state = json.load(f)
            counts, done = [int(c) for c in state["counts"]], int(state["done"])
            if len(counts) == len(self._paths) and 0 < done <= len(counts) and all(map(os.path.exists, partials)):
                return counts, done
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no (usable) record: start afresh
        counts = []
        for path in self._paths:
            with reading_file(path, type(self).__name__):
                with np.load(path, allow_pickle=False) as npz:
                    counts.append(int(np.asarray(npz["labels"]).size))
        return counts, 0

    def _read(self, folder: str, part: str):
        name = type(self).__name__
        images_path, labels_path = self._cache_paths(folder, part)
        if not os.path.exists(images_path):
            failure: Optional[BaseException] = None
            if comm.get_local_rank() == 0:  # one writer per machine; the others wait for it
                try:
                    self._convert(images_path, labels_path)
                except Exception as exc:  # re-raised below, after every rank left the barrier
                    failure = exc
            comm.synchronize()
            if failure is not None and (isinstance(failure, DatasetError) or not isinstance(failure, OSError)):
                raise failure
            if not os.path.exists(images_path):  # e.g. a read-only dataset folder
                logger.warning(
                    "%s: cannot write the cache %s (%s); reading the npz batches into memory instead "
                    "(set cache_dir to a writable folder to convert once)", name, images_path, failure,
                )
                parts = [self._read_npz(p) for p in self._paths]
                return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        with reading_file(images_path, name, fix="delete the cache file; it is rebuilt on next use"):
            images = np.load(images_path, mmap_mode=None if self.in_ram else "r")
            labels = np.load(labels_path).astype(np.int64)
            if images.shape != (len(labels), 3, self.K, self.K):
                raise ValueError(f"cache holds {images.shape} images for {len(labels)} labels")
        return images, labels


def _write_json(path: str, value) -> None:
    """Write ``value`` as JSON atomically (a kill mid-write leaves the previous record)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(tmp, path)


@DATASETS.register()
class ImageNet8(_DownsampledImageNet):
    """Downsampled ImageNet 8x8: 1000 classes, 1,281,167 train / 50,000 test (the published val), npz batches."""

    K, SIZE, SUBDIRS = 8, (8, 8), ("Imagenet8",)


@DATASETS.register()
class ImageNet16(_DownsampledImageNet):
    """Downsampled ImageNet 16x16: 1000 classes, 1,281,167 train / 50,000 test (the published val), npz batches."""

    K, SIZE, SUBDIRS = 16, (16, 16), ("Imagenet16",)


@DATASETS.register()
class ImageNet32(_DownsampledImageNet):
    """Downsampled ImageNet 32x32: 1000 classes, 1,281,167 train / 50,000 test (the published val), npz batches."""

    K, SIZE, SUBDIRS = 32, (32, 32), ("Imagenet32",)


@DATASETS.register()
class ImageNet64(_DownsampledImageNet):
    """Downsampled ImageNet 64x64: 1000 classes, 1,281,167 train / 50,000 test (the published val), npz batches."""

    K, SIZE, SUBDIRS = 64, (64, 64), ("Imagenet64",)

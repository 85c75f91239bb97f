"""MNIST from LeCun's idx files (gzip-compressed or not).

Layout under the dataset root (torchvision's ``MNIST/raw``; a flat ``MNIST/`` also works)::

    MNIST/raw/  train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
                t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

An idx file is a big-endian header — two zero bytes, the element type (``0x08`` = uint8),
the number of dimensions, then one int32 per dimension — followed by the raw values.
"""
from __future__ import annotations

import gzip
import os
import struct
from typing import List, Tuple

import numpy as np

from flexcore.registry import DATASETS

from .base import reading_file
from .images import ImageClassificationDataset

__all__ = ["MNIST", "read_idx"]

_OSSCI = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def read_idx(path: str, dataset: str, ndim: int) -> np.ndarray:
    """The uint8 array of an idx file (``.gz`` read transparently); a bad header or size raises CorruptDatasetError."""
    with reading_file(path, dataset):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
        if len(data) < 4 or data[:2] != b"\x00\x00":
            raise ValueError("not an idx file (the first two bytes must be zero)")
        if data[2] != 0x08:
            raise ValueError(f"element type 0x{data[2]:02x}, expected 0x08 (unsigned byte)")
        if data[3] != ndim:
            raise ValueError(f"{data[3]} dimensions, expected {ndim} (magic number {2048 + ndim})")
        header = 4 + 4 * ndim
        if len(data) < header:
            raise ValueError("truncated header")
        dims = struct.unpack(f">{ndim}I", data[4:header])
        expected = header + int(np.prod(dims))
        if len(data) != expected:
            raise ValueError(f"header says {dims} -> {expected} bytes, file holds {len(data)} (truncated?)")
        return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


class _MNISTFiles(ImageClassificationDataset):
    """Shared reader of the MNIST idx files (MNIST and its sequential variants)."""

    SUBDIRS = ("MNIST/raw", "MNIST")
    SOURCE = f"{_OSSCI} (mirror of yann.lecun.com/exdb/mnist: the four *-ubyte.gz files)"
    IN_CHANNELS = 1
    NUM_CLASSES = 10
    SIZE = (28, 28)
    PUBLISHED_SIZES = {"train": 60_000, "test": 10_000}
    STATS = {"reference": ((0.1307,), (0.3081,))}  # MNIST's own training statistics
    CUTOUT_LENGTH = 14
    CLASS_NAMES = tuple(str(d) for d in range(10))
    PREFIX = {"train": "train", "test": "t10k"}
    DOWNLOADS = tuple(
        (_OSSCI + name, name, md5)
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        )
    )
    DOWNLOAD_SUBDIR = "MNIST/raw"

    @classmethod
    def _names(cls, part: str) -> List[str]:
        prefix = cls.PREFIX[part]
        return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]

    @classmethod
    def _expected_files(cls, part: str):
        return [(name, name + ".gz") for name in cls._names(part)]

    def _read(self, folder: str, part: str) -> Tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        paths = []
        for base in self._names(part):
            plain = os.path.join(folder, base)
            paths.append(plain if os.path.exists(plain) else plain + ".gz")  # plain is faster to read
        images = read_idx(paths[0], name, ndim=3)
        labels = read_idx(paths[1], name, ndim=1).astype(np.int64)
        with reading_file(paths[0], name):
            if images.shape[1:] != self.SIZE:
                raise ValueError(f"images are {images.shape[1:]}, expected {self.SIZE}")
        with reading_file(paths[1], name):
            if len(labels) != len(images):
                raise ValueError(f"{len(labels)} labels for {len(images)} images in {os.path.basename(paths[0])}")
            if labels.size and labels.max() >= self.NUM_CLASSES:
                raise ValueError(f"labels outside 0..{self.NUM_CLASSES - 1}")
        self.classes = self.CLASS_NAMES
        return images[:, None], labels


@DATASETS.register()
class MNIST(_MNISTFiles):
    """MNIST handwritten digits: 28x28 grey images, 10 classes, 60,000 train / 10,000 test (idx files)."""

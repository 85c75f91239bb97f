"""STL-10 from its published binary files.

Layout under the dataset root (what ``stl10_binary.tar.gz`` unpacks to)::

    stl10_binary/  train_X.bin  train_y.bin  test_X.bin  test_y.bin  [class_names.txt]

``*_X.bin``: uint8, per image 3 channel planes of 96x96 stored column-major (Matlab order),
so a plane is read as ``(W, H)`` and transposed. ``*_y.bin``: one uint8 label 1..10 per image.
The unlabelled part (``unlabeled_X.bin``) is not used.
"""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np

from flexcore.registry import DATASETS

from .base import reading_file
from .images import ImageClassificationDataset

__all__ = ["STL10"]

_IMAGE_BYTES = 3 * 96 * 96


@DATASETS.register()
class STL10(ImageClassificationDataset):
    """STL-10 labelled part: 96x96 colour images, 10 classes, 5,000 train / 8,000 test (binary files).

    The original's ``resnet`` augmentation for STL-10 is RandomCrop(96, padding 12), flip and
    one 32-pixel Cutout hole; its CenterCrop(96) is the identity on 96x96 images.
    """

    SUBDIRS = ("stl10_binary",)
    SOURCE = "https://cs.stanford.edu/~acoates/stl10/ (stl10_binary.tar.gz, binary version)"
    IN_CHANNELS = 3
    NUM_CLASSES = 10
    SIZE = (96, 96)
    PUBLISHED_SIZES = {"train": 5_000, "test": 8_000}
    STATS = {"reference": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))}  # STL-10's own statistics
    CUTOUT_LENGTH = 32
    RESNET_CUTOUT = True
    CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
    DOWNLOADS = (
        (
            "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
            "stl10_binary.tar.gz",
            "91f7769df0f17e558f3565bffb0c7dfb",
        ),
    )

    @classmethod
    def _expected_files(cls, part: str):
        return [f"{part}_X.bin", f"{part}_y.bin"]

    def _read(self, folder: str, part: str) -> Tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        x_path, y_path = (os.path.join(folder, f) for f in self._expected_files(part))
        with reading_file(x_path, name):
            raw = np.fromfile(x_path, dtype=np.uint8)
            if raw.size % _IMAGE_BYTES:
                raise ValueError(f"{raw.size} bytes is not a whole number of 3x96x96 images (truncated?)")
            # (N, C, W, H) on disk -> (N, C, H, W)
            images = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
        with reading_file(y_path, name):
            labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
            if len(labels) != len(images):
                raise ValueError(f"{len(labels)} labels for {len(images)} images in {os.path.basename(x_path)}")
            if labels.size and (labels.min() < 1 or labels.max() > 10):
                raise ValueError("labels outside 1..10")
        self.classes = self._class_names(folder)
        return images, labels - 1

    def _class_names(self, folder: str) -> Tuple[str, ...]:
        path = os.path.join(folder, "class_names.txt")
        if not os.path.exists(path):
            return self.CLASS_NAMES
        with open(path, encoding="utf-8") as f:
            names = tuple(line.strip() for line in f if line.strip())
        return names if len(names) == self.NUM_CLASSES else self.CLASS_NAMES

"""Writers of tiny datasets in their exact published on-disk formats (for the loader tests).

Each writer returns the arrays it wrote so tests can compare what the loaders return with
what is on disk. Images are random uint8 so that any layout mistake (channel order, row vs
column major) changes the values.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from typing import Dict, Tuple

import numpy as np

Arrays = Tuple[np.ndarray, np.ndarray]  # images (N, C, H, W) uint8, labels (N,) int64


def _images(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _pickle_batch(path: str, obj: Dict, numpy_core_names: bool = False) -> None:
    """Protocol 2 with bytes keys, as the CIFAR batches were written by Python 2's cPickle.

    ``numpy_core_names`` rewrites ``numpy._core`` to ``numpy.core``, the module the published
    files name (they predate numpy 2).
    """
    data = pickle.dumps(obj, protocol=2)
    if numpy_core_names:
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    with open(path, "wb") as f:
        f.write(data)


def write_cifar10(root: str, per_batch: int = 6, n_test: int = 10, seed: int = 0) -> Dict[str, Arrays]:
    """``cifar-10-batches-py/`` with 5 training batches of ``per_batch`` images, a test batch, meta."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    out = {}
    train_x, train_y = [], []
    for i in range(1, 7):
        n = per_batch if i <= 5 else n_test
        x = _images(rng, n, 3, 32, 32)
        y = _balanced_labels(rng, n, 10)
        name = f"data_batch_{i}" if i <= 5 else "test_batch"
        batch = {
            b"batch_label": f"training batch {i} of 5".encode() if i <= 5 else b"testing batch 1 of 1",
            b"labels": [int(v) for v in y],  # a list of ints, as published
            b"data": x.reshape(n, 3072),
            b"filenames": [f"img_{i}_{k}.png".encode() for k in range(n)],
        }
        _pickle_batch(os.path.join(folder, name), batch, numpy_core_names=(i == 1))
        if i <= 5:
            train_x.append(x)
            train_y.append(y)
        else:
            out["test"] = (x, y)
    out["train"] = (np.concatenate(train_x), np.concatenate(train_y))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle_batch(
        os.path.join(folder, "batches.meta"),
        {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072},
    )
    return out


def write_cifar100(root: str, n_train: int = 40, n_test: int = 20, seed: int = 1) -> Dict[str, Arrays]:
    """``cifar-100-python/`` with ``train``, ``test`` (fine and coarse labels) and ``meta``.

    Returns ``{"train": (x, fine), "test": (x, fine), "train_coarse": ..., "test_coarse": ...}``.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n, 3, 32, 32)
        fine = rng.integers(0, 100, size=n).astype(np.int64)
        coarse = fine // 5
        batch = {
            b"filenames": [f"{part}_{k}.png".encode() for k in range(n)],
            b"batch_label": f"{part} batch 1 of 1".encode(),
            b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) for v in coarse],
            b"data": x.reshape(n, 3072),
        }
        _pickle_batch(os.path.join(folder, part), batch)
        out[part] = (x, fine)
        out[f"{part}_coarse"] = (x, coarse)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _pickle_batch(os.path.join(folder, "meta"), meta)
    return out


def write_idx(path: str, array: np.ndarray, compress: bool) -> None:
    """An idx file (LeCun's MNIST format): magic ``0x0000 08 <ndim>``, big-endian int32 dims, uint8 data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        with gzip.open(path + ".gz", "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)


def write_mnist(
    root: str, n_train: int = 30, n_test: int = 12, compress: bool = True, seed: int = 2, subdir: str = "MNIST/raw"
) -> Dict[str, Arrays]:
    """``MNIST/raw/`` idx files (torchvision's layout), gzip-compressed or plain."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, subdir)
    os.makedirs(folder, exist_ok=True)
    out = {}
    for prefix, part, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        x = _images(rng, n, 1, 28, 28)
        y = _balanced_labels(rng, n, 10)
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), x[:, 0], compress)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), y.astype(np.uint8), compress)
        out[part] = (x, y)
    return out


def write_stl10(root: str, n_train: int = 20, n_test: int = 10, seed: int = 3) -> Dict[str, Arrays]:
    """``stl10_binary/``: ``*_X.bin`` uint8 images stored column-major (C, W, H), ``*_y.bin`` labels 1..10."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "stl10_binary")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n, 3, 96, 96)
        y = _balanced_labels(rng, n, 10)
        # Published layout: per image, per channel, the 96x96 plane in column-major order.
        x.transpose(0, 1, 3, 2).tofile(os.path.join(folder, f"{part}_X.bin"))
        (y + 1).astype(np.uint8).tofile(os.path.join(folder, f"{part}_y.bin"))
        out[part] = (x, y)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    with open(os.path.join(folder, "class_names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    return out


def write_imagenet(
    root: str, size: int = 8, per_batch: int = 30, n_val: int = 20, batches: int = 10, seed: int = 4,
    compressed: bool = False, folder_name: str = None,
) -> Dict[str, Arrays]:
    """``Imagenet{size}/``: ``train_data_batch_1..10.npz`` (``data``, ``labels`` 1..1000, ``mean``), ``val_data.npz``."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, folder_name or f"Imagenet{size}")
    os.makedirs(folder, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    xs, ys = [], []
    for i in range(1, batches + 1):
        x = _images(rng, per_batch, 3, size, size)
        y = rng.integers(0, 1000, size=per_batch).astype(np.int64)
        flat = x.reshape(per_batch, -1)
        save(
            os.path.join(folder, f"train_data_batch_{i}.npz"),
            data=flat, labels=[int(v) + 1 for v in y], mean=flat.mean(axis=0),
        )
        xs.append(x)
        ys.append(y)
    xv = _images(rng, n_val, 3, size, size)
    yv = rng.integers(0, 1000, size=n_val).astype(np.int64)
    save(os.path.join(folder, "val_data.npz"), data=xv.reshape(n_val, -1), labels=[int(v) + 1 for v in yv])
    return {"train": (np.concatenate(xs), np.concatenate(ys)), "test": (xv, yv)}


def normalized(image_uint8: np.ndarray, mean, std):
    """What a loader must return for a stored uint8 image ``(C, H, W)``: ``(x / 255 - mean) / std``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image_uint8)).float() / 255
    c = x.shape[0]
    return (x - torch.tensor(mean).view(c, 1, 1)) / torch.tensor(std).view(c, 1, 1)


def truncate(path: str, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its size (a partial download)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))

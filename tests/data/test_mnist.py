import gzip
import os
import random

import numpy as np
import pytest
import torch

from flexcore.data import CorruptDatasetError, MissingDatasetError, build_dataset, describe_dataset
from flexcore.data.sequential_images import permutation
from published_formats import normalized, truncate, write_idx, write_mnist

MEAN, STD = (0.1307,), (0.3081,)


@pytest.fixture(scope="module")
def mnist_gz(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mnist_gz"))
    return root, write_mnist(root, compress=True)


@pytest.mark.parametrize("compress,subdir", [(True, "MNIST/raw"), (False, "MNIST/raw"), (False, "MNIST")])
def test_reads_idx_files_gz_or_plain(tmp_path, compress, subdir):
    arrays = write_mnist(str(tmp_path), compress=compress, subdir=subdir)
    ds = build_dataset("MNIST", "test", root=str(tmp_path))
    x_ref, y_ref = arrays["test"]
    assert len(ds) == len(y_ref) == 12
    x, y = ds[4]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert y == y_ref[4] and isinstance(y, int)
    assert torch.allclose(x, normalized(x_ref[4], MEAN, STD), atol=1e-6)


def test_holdout_and_metadata(mnist_gz):
    root, arrays = mnist_gz
    train = build_dataset("mnist", "train", root=root)
    val = build_dataset("mnist", "val", root=root)
    assert (len(train), len(val)) == (27, 3)
    assert not set(train.indices) & set(val.indices)
    assert val[0][1] == arrays["train"][1][val.indices[0]]
    meta = train.metadata
    assert meta == describe_dataset("MNIST", root="/elsewhere", augment="standard")
    assert (meta.in_channels, meta.num_classes, meta.shape) == (1, 10, (28, 28))
    assert meta.split_sizes == {"train": 54000, "val": 6000, "test": 10000}
    aug = build_dataset("mnist", "train", root=root, augment="standard")
    random.seed(0)
    a = [aug[i][0] for i in range(8)]
    random.seed(0)
    assert all(torch.equal(u, aug[i][0]) for i, u in enumerate(a))


def test_missing_files_message_lists_gz_alternatives(tmp_path):
    with pytest.raises(MissingDatasetError) as err:
        build_dataset("mnist", "test", root=str(tmp_path))
    msg = str(err.value)
    assert "MNIST/raw" in msg and "t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz" in msg
    assert "ossci-datasets" in msg


def test_bad_magic_truncation_and_count_mismatch_name_the_file(tmp_path):
    root = str(tmp_path)
    write_mnist(root, compress=True)
    folder = os.path.join(root, "MNIST", "raw")
    images = os.path.join(folder, "t10k-images-idx3-ubyte.gz")
    truncate(images, keep=0.6)  # a partial download: gzip stream ends early
    with pytest.raises(CorruptDatasetError, match="t10k-images-idx3-ubyte.gz"):
        build_dataset("mnist", "test", root=root)
    # Labels file where an images file belongs: wrong magic number.
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), np.zeros(12, np.uint8), compress=True)
    with pytest.raises(CorruptDatasetError, match=r"1 dimensions, expected 3 \(magic number 2051\)"):
        build_dataset("mnist", "test", root=root)
    # Header promises more images than the (decompressed) file holds.
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), np.zeros((12, 28, 28), np.uint8), compress=True)
    with gzip.open(images, "rb") as f:
        good = f.read()
    with gzip.open(images, "wb") as f:
        f.write(good[:1000])
    with pytest.raises(CorruptDatasetError, match=r"\(12, 28, 28\) -> 9424 bytes, file holds 1000"):
        build_dataset("mnist", "test", root=root)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), np.zeros((11, 28, 28), np.uint8), compress=True)
    with pytest.raises(CorruptDatasetError, match="12 labels for 11 images"):
        build_dataset("mnist", "test", root=root)


def test_smnist_is_row_major_flattening(mnist_gz):
    root, arrays = mnist_gz
    ds = build_dataset("sMNIST", "test", root=root)
    x, y = ds[2]
    assert x.shape == (1, 784) and y == arrays["test"][1][2]
    assert torch.allclose(x, normalized(arrays["test"][0][2], MEAN, STD).reshape(1, 784), atol=1e-6)
    assert ds.metadata.shape == (784,) and ds.metadata.dim == 1
    assert ds.metadata == describe_dataset("SMNIST")


def test_pmnist_permutation_is_fixed_seeded_and_shared_by_splits(mnist_gz):
    root, arrays = mnist_gz
    test = build_dataset("pMNIST", "test", root=root)
    val = build_dataset("pmnist", "val", root=root)
    perm = permutation(784, 0)
    assert np.array_equal(perm, np.random.RandomState(0).permutation(784))  # the original's draw
    assert torch.equal(test.permutation, val.permutation) and np.array_equal(test.permutation.numpy(), perm)
    flat = normalized(arrays["test"][0][1], MEAN, STD).reshape(1, 784)
    assert torch.allclose(test[1][0], flat[:, perm], atol=1e-6)
    other = build_dataset("pMNIST", "test", root=root, permutation_seed=5)
    assert not torch.equal(other.permutation, test.permutation)
    assert other.metadata.extras["permutation_seed"] == 5
    assert other.metadata == describe_dataset("PMNIST", permutation_seed=5)
    assert build_dataset("psMNIST", "test", root=root).metadata.name == "PMNIST"

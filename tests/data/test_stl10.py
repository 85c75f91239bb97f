import os
import random

import numpy as np
import pytest
import torch

from flexcore.data import CorruptDatasetError, MissingDatasetError, build_dataset, describe_dataset
from published_formats import normalized, truncate, write_stl10

MEAN, STD = (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)


@pytest.fixture(scope="module")
def stl(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("stl"))
    return root, write_stl10(root)


def test_column_major_layout_and_one_based_labels(stl):
    root, arrays = stl
    ds = build_dataset("STL10", "test", root=root)
    x_ref, y_ref = arrays["test"]
    assert len(ds) == 10
    for i in (0, 7):
        x, y = ds[i]
        assert x.shape == (3, 96, 96) and x.dtype == torch.float32
        assert y == y_ref[i] and 0 <= y <= 9
        assert torch.allclose(x, normalized(x_ref[i], MEAN, STD), atol=1e-6)
    # A non-symmetric image: reading the planes row-major instead would transpose it.
    assert not torch.allclose(ds[0][0], ds[0][0].transpose(1, 2))
    assert ds.classes[7] == "monkey"


def test_splits_metadata_and_resolution(stl):
    root, arrays = stl
    train, val = build_dataset("stl10", "train", root=root), build_dataset("stl10", "val", root=root)
    assert (len(train), len(val)) == (18, 2) and not set(train.indices) & set(val.indices)
    meta = build_dataset("stl10", "test", root=root, resolution=48).metadata
    assert meta.shape == (48, 48) and meta == describe_dataset("STL10", resolution=48)
    assert meta.split_sizes == {"train": 4500, "val": 500, "test": 8000}
    small = build_dataset("stl10", "test", root=root, resolution=48)
    assert small[0][0].shape == (3, 48, 48)


def test_resnet_augmentation_includes_a_32px_cutout(stl):
    root, _ = stl
    ds = build_dataset("stl10", "train", root=root, augment="resnet")
    names = [type(t).__name__ for t in ds.transform.transforms]
    assert names[-1] == "Cutout" and ds.transform.transforms[-1].length == 32
    assert "RandomCrop" in names and ds.transform.transforms[names.index("RandomCrop")].padding == 12
    random.seed(0)
    x = ds[0][0]
    zero = (x == 0).all(0)
    assert 0 < int(zero.sum()) <= 32 * 32


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MissingDatasetError, match=r"stl10_binary.*train_X\.bin.*stanford"):
        build_dataset("stl10", "train", root=str(tmp_path))
    write_stl10(str(tmp_path))
    folder = os.path.join(str(tmp_path), "stl10_binary")
    truncate(os.path.join(folder, "test_X.bin"), keep=0.75)
    with pytest.raises(CorruptDatasetError, match=r"test_X\.bin.*not a whole number"):
        build_dataset("stl10", "test", root=str(tmp_path))
    write_stl10(str(tmp_path))
    np.zeros(3, np.uint8).tofile(os.path.join(folder, "test_y.bin"))
    with pytest.raises(CorruptDatasetError, match=r"test_y\.bin.*3 labels for 10 images"):
        build_dataset("stl10", "test", root=str(tmp_path))

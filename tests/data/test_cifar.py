import os
import pickle
import random

import numpy as np
import pytest
import torch

from flexcore.data import CorruptDatasetError, MissingDatasetError, build_dataset, describe_dataset
from flexcore.registry import DATASETS
from published_formats import normalized, truncate, write_cifar10, write_cifar100

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("c10"))
    return root, write_cifar10(root)


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("c100"))
    return root, write_cifar100(root)


def test_test_split_reads_the_test_batch_exactly(cifar10):
    root, arrays = cifar10
    ds = build_dataset("CIFAR10", "test", root=root)
    x_ref, y_ref = arrays["test"]
    assert len(ds) == len(y_ref)
    for i in (0, 3, len(ds) - 1):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
        assert isinstance(y, int) and y == y_ref[i]
        assert torch.allclose(x, normalized(x_ref[i], IMAGENET_MEAN, IMAGENET_STD), atol=1e-6)
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10


def test_holdout_split_is_seeded_stratified_and_disjoint(cifar10):
    root, arrays = cifar10
    train = build_dataset("cifar10", "train", root=root, val_fraction=0.2)
    val = build_dataset("cifar10", "val", root=root, val_fraction=0.2)
    n = len(arrays["train"][1])  # 30
    assert (len(train), len(val)) == (24, 6)
    assert not set(train.indices) & set(val.indices)
    assert set(train.indices) | set(val.indices) == set(range(n))
    x, y = val[2]
    j = val.indices[2]
    assert y == arrays["train"][1][j]
    assert torch.allclose(x, normalized(arrays["train"][0][j], IMAGENET_MEAN, IMAGENET_STD), atol=1e-6)
    # Balanced labels (3 per class) -> stratified hold-out takes from 6 different classes.
    assert len(set(val.targets.tolist())) == 6
    again = build_dataset("cifar10", "val", root=root, val_fraction=0.2)
    other = build_dataset("cifar10", "val", root=root, val_fraction=0.2, split_seed=7)
    assert np.array_equal(again.indices, val.indices) and not np.array_equal(other.indices, val.indices)


def test_parity_option_uses_the_test_set_as_val(cifar10):
    root, arrays = cifar10
    val = build_dataset("cifar10", "val", root=root, val_source="test")
    train = build_dataset("cifar10", "train", root=root, val_source="test")
    assert len(val) == len(arrays["test"][1]) and len(train) == len(arrays["train"][1])
    assert torch.equal(val[1][0], build_dataset("cifar10", "test", root=root)[1][0])
    assert val.metadata.split_sizes == {"train": 50000, "val": 10000, "test": 10000}


def test_metadata_describe_and_resolution(cifar10):
    root, _ = cifar10
    ds = build_dataset("CIFAR10", "test", root=root, resolution=16, normalize="dataset")
    assert ds[0][0].shape == (3, 16, 16)
    meta = ds.metadata
    assert meta == DATASETS.get_raw("CIFAR10").describe(resolution=16, normalize="dataset", root="/x", augment="resnet")
    assert meta == describe_dataset("cifar10", resolution=16, normalize="dataset")
    assert (meta.in_channels, meta.num_classes, meta.shape, meta.dim) == (3, 10, (16, 16), 2)
    assert meta.split_sizes == {"train": 45000, "val": 5000, "test": 10000}
    assert meta.extras["mean"] == (0.4914, 0.4822, 0.4465)
    assert describe_dataset("cifar10").extras["mean"] == IMAGENET_MEAN  # parity default


def test_augmented_train_split_is_seeded_and_eval_is_not_augmented(cifar10):
    root, _ = cifar10
    ds = build_dataset("cifar10", "train", root=root, augment="resnet")
    random.seed(0)
    a = torch.stack([ds[i][0] for i in range(len(ds))])
    random.seed(0)
    b = torch.stack([ds[i][0] for i in range(len(ds))])
    plain = torch.stack([x for x, _ in build_dataset("cifar10", "train", root=root)])
    assert torch.equal(a, b) and not torch.equal(a, plain)
    val = build_dataset("cifar10", "val", root=root, augment="resnet")
    assert torch.equal(val[0][0], build_dataset("cifar10", "val", root=root)[0][0])


def test_env_root_and_missing_root_message(cifar10, tmp_path, monkeypatch):
    root, _ = cifar10
    monkeypatch.setenv("FLEXCORE_DATASETS", root)
    assert len(build_dataset("cifar10", "test")) == 10
    with pytest.raises(MissingDatasetError) as err:
        build_dataset("cifar10", "train", root=str(tmp_path))
    msg = str(err.value)
    assert "CIFAR10" in msg and os.path.join(str(tmp_path), "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "batches.meta" in msg and "cs.toronto.edu" in msg
    assert "--gin \"CIFAR10.download = True\"" in msg


def test_truncated_and_malformed_batches_name_the_file(cifar10, tmp_path):
    write_cifar10(str(tmp_path))
    path = os.path.join(str(tmp_path), "cifar-10-batches-py", "test_batch")
    truncate(path)
    with pytest.raises(CorruptDatasetError, match="test_batch"):
        build_dataset("cifar10", "test", root=str(tmp_path))
    # Wrong shape of `data` (a plausible but wrong export).
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}, f, protocol=2)
    with pytest.raises(CorruptDatasetError, match=r"test_batch.*3072"):
        build_dataset("cifar10", "test", root=str(tmp_path))
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8)}, f, protocol=2)
    with pytest.raises(CorruptDatasetError, match="test_batch"):
        build_dataset("cifar10", "test", root=str(tmp_path))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    write_cifar10(str(tmp_path))

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = os.path.join(str(tmp_path), "cifar-10-batches-py", "test_batch")
    with open(path, "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(CorruptDatasetError, match="refusing to load"):
        build_dataset("cifar10", "test", root=str(tmp_path))


def test_cifar100_fine_and_coarse_labels(cifar100):
    root, arrays = cifar100
    fine = build_dataset("CIFAR100", "test", root=root)
    coarse = build_dataset("CIFAR100", "test", root=root, label_type="coarse")
    assert [fine[i][1] for i in range(5)] == arrays["test"][1][:5].tolist()
    assert [coarse[i][1] for i in range(5)] == arrays["test_coarse"][1][:5].tolist()
    assert fine.metadata.num_classes == 100 and coarse.metadata.num_classes == 20
    assert coarse.metadata == describe_dataset("cifar100", label_type="coarse")
    assert fine.classes[3] == "fine3" and coarse.classes[3] == "coarse3"
    assert torch.allclose(fine[2][0], normalized(arrays["test"][0][2], IMAGENET_MEAN, IMAGENET_STD), atol=1e-6)
    train = build_dataset("cifar100", "train", root=root)
    assert len(train) == 36 and train.metadata.split_sizes["val"] == 5000
    with pytest.raises(MissingDatasetError, match="cifar-100-python"):
        build_dataset("cifar100", "test", root=os.path.dirname(root))


def test_gin_bindings_reach_the_dataset_and_its_description(cifar10):
    import gin

    root, _ = cifar10
    gin.parse_config(["CIFAR10.resolution = 16", "CIFAR10.normalize = 'dataset'"])
    ds = build_dataset("cifar10", "test", root=root)
    assert ds[0][0].shape == (3, 16, 16)
    assert describe_dataset("CIFAR10") == ds.metadata
    fake = build_dataset("cifar10", "train", fake=True, fake_length=4)
    assert fake[0][0].shape == (3, 16, 16) and len(fake) == 4


def test_scoped_bindings_reach_the_description_and_fake_data():
    import gin

    gin.parse_config(["CIFAR10.normalize = 'dataset'", "train/CIFAR10.resolution = 16"])
    with gin.config_scope("train"):
        assert describe_dataset("cifar10").shape == (16, 16)
        assert build_dataset("cifar10", "train", fake=True)[0][0].shape == (3, 16, 16)
    test_meta = describe_dataset("cifar10")
    assert test_meta.shape == (32, 32) and test_meta.extras["normalize"] == "dataset"

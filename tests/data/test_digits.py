import random

import numpy as np
import pytest
import torch

from flexcore.data import build_dataset, describe_dataset
from flexcore.data.digits import DIGITS_STATS, load_digits_arrays
from flexcore.data.transforms import resize
from flexcore.registry import DATASETS


@pytest.fixture(scope="module")
def raw():
    return load_digits_arrays()


def test_embedded_data_equals_scikit_learns_loader(raw):
    from sklearn.datasets import load_digits

    ref = load_digits()
    assert np.array_equal(raw[0], ref.images) and np.array_equal(raw[1], ref.target)


def test_normalisation_constants_are_the_sets_statistics(raw):
    x = raw[0] / 16.0
    assert abs(x.mean() - DIGITS_STATS[0][0]) < 1e-4
    assert abs(x.std() - DIGITS_STATS[1][0]) < 1e-4


def test_splits_are_a_stratified_partition(raw):
    splits = {s: build_dataset("digits", s) for s in ("train", "val", "test")}
    sizes = {s: len(d) for s, d in splits.items()}
    assert sizes == {"train": 1258, "val": 180, "test": 359}
    assert sizes == splits["train"].metadata.split_sizes
    idx = {s: set(d.indices.tolist()) for s, d in splits.items()}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert idx["train"] | idx["val"] | idx["test"] == set(range(1797))
    # Stratified: every class holds ~20% of its images in test.
    test_counts = np.bincount(splits["test"].targets.numpy(), minlength=10)
    all_counts = np.bincount(raw[1], minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)


def test_samples_are_normalised_images_with_int_labels(raw):
    ds = build_dataset("Digits", "val")
    x, y = ds[5]
    j = ds.indices[5]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8)
    assert isinstance(y, int) and y == raw[1][j]
    expected = (torch.as_tensor(raw[0][j], dtype=torch.float32) / 16 - DIGITS_STATS[0][0]) / DIGITS_STATS[1][0]
    assert torch.allclose(x[0], expected, atol=1e-6)


def test_upsampling_and_metadata(raw):
    ds = build_dataset("digits", "test", resolution=32, interpolation="nearest")
    x, _ = ds[0]
    assert x.shape == (1, 32, 32)
    native = build_dataset("digits", "test")[0][0]
    assert torch.allclose(x, resize(native, 32, "nearest"))
    assert ds.metadata == DATASETS.get_raw("Digits").describe(resolution=32, root="/nowhere", augment="resnet")
    assert ds.metadata.shape == (32, 32) and ds.metadata.dim == 2 and ds.metadata.in_channels == 1
    assert describe_dataset("digits", resolution=16).shape == (16, 16)


def test_seeded_split_and_augmentation_are_reproducible():
    a, b = build_dataset("digits", "train"), build_dataset("digits", "train")
    assert np.array_equal(a.indices, b.indices) and torch.equal(a.inputs, b.inputs)
    other = build_dataset("digits", "train", split_seed=1)
    assert not np.array_equal(a.indices, other.indices)
    aug = build_dataset("digits", "train", augment="resnet", resolution=16)
    random.seed(0)
    first = torch.stack([aug[i][0] for i in range(16)])
    random.seed(0)
    again = torch.stack([aug[i][0] for i in range(16)])
    assert torch.equal(first, again) and first.shape == (16, 1, 16, 16)
    # Evaluation splits are never augmented.
    val = build_dataset("digits", "val", augment="resnet")
    assert torch.equal(val[0][0], build_dataset("digits", "val")[0][0])


def test_parity_option_makes_val_the_test_part():
    val = build_dataset("digits", "val", val_source="test")
    test = build_dataset("digits", "test")
    train = build_dataset("digits", "train", val_source="test")
    assert np.array_equal(val.indices, test.indices)
    assert len(train) == 1797 - len(test)
    assert val.metadata.split_sizes == {"train": 1438, "val": 359, "test": 359}


def test_bad_options_are_reported():
    with pytest.raises(ValueError, match="split"):
        build_dataset("digits", "validation")
    with pytest.raises(ValueError, match="augment"):
        build_dataset("digits", "train", augment="mixup")
    with pytest.raises(ValueError, match="test_fraction"):
        build_dataset("digits", "train", test_fraction=0.95)


@pytest.mark.parametrize("permutation_seed", [None, 3])
def test_sequential_digits_read_the_images_pixel_by_pixel(permutation_seed):
    images = build_dataset("digits", "test", resolution=16)
    seqs = build_dataset("SDigits", "test", resolution=16, permutation_seed=permutation_seed)
    meta = describe_dataset("SDigits", resolution=16, permutation_seed=permutation_seed)
    assert meta.shape == seqs.metadata.shape == (256,) and meta.in_channels == 1 and meta.num_classes == 10
    assert meta.extras["permutation_seed"] == permutation_seed
    order = np.arange(256) if permutation_seed is None else np.random.RandomState(3).permutation(256)
    for i in (0, 7):
        (x, y), (image, label) = seqs[i], images[i]
        assert x.shape == (1, 256) and y == label
        assert torch.equal(x, image.reshape(1, -1)[:, torch.as_tensor(order)])
    # the same permutation in every split
    train = build_dataset("SDigits", "train", resolution=16, permutation_seed=permutation_seed)
    assert torch.equal(train[0][0], build_dataset("digits", "train", resolution=16)[0][0].reshape(1, -1)[:, order])

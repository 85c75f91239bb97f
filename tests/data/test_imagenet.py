import glob
import os
import shutil

import numpy as np
import pytest
import torch

from flexcore.data import CorruptDatasetError, MissingDatasetError, build_dataset, describe_dataset
from flexcore.data.imagenet import ImageNet8
from published_formats import normalized, truncate, write_imagenet

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def inet8(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inet"))
    return root, write_imagenet(root, size=8, per_batch=4, n_val=6)


def test_channel_major_rows_and_one_based_labels(inet8):
    root, arrays = inet8
    ds = build_dataset("ImageNet8", "test", root=root)
    x_ref, y_ref = arrays["test"]
    assert len(ds) == 6
    for i in (0, 5):
        x, y = ds[i]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32
        assert y == y_ref[i] and 0 <= y < 1000
        assert torch.allclose(x, normalized(x_ref[i], MEAN, STD), atol=1e-6)


def test_train_batches_in_order_with_holdout(inet8):
    root, arrays = inet8
    train = build_dataset("imagenet8", "train", root=root, val_fraction=0.25)
    val = build_dataset("imagenet8", "val", root=root, val_fraction=0.25)
    assert (len(train), len(val)) == (30, 10)
    j = val.indices[3]
    assert val[3][1] == arrays["train"][1][j]
    assert torch.allclose(val[3][0], normalized(arrays["train"][0][j], MEAN, STD), atol=1e-6)
    assert not set(train.indices) & set(val.indices)


def test_conversion_cache_is_written_once_and_keyed_by_its_sources(tmp_path, monkeypatch):
    root = str(tmp_path)
    write_imagenet(root, size=8, per_batch=2, n_val=3)
    first = build_dataset("ImageNet8", "test", root=root)
    caches = glob.glob(os.path.join(root, "Imagenet8", "flexcore_cache", "imagenet8_test_*.images.npy"))
    assert len(caches) == 1 and isinstance(first.images, np.memmap)

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(ImageNet8, "_convert", fail)
    again = build_dataset("ImageNet8", "test", root=root)
    assert torch.equal(again[2][0], first[2][0])
    monkeypatch.undo()
    # New source files (different size) -> new key, new cache.
    write_imagenet(root, size=8, per_batch=2, n_val=4, seed=9)
    changed = build_dataset("ImageNet8", "test", root=root)
    assert len(changed) == 4
    assert len(glob.glob(os.path.join(root, "Imagenet8", "flexcore_cache", "imagenet8_test_*.images.npy"))) == 2
    in_ram = build_dataset("ImageNet8", "test", root=root, in_ram=True)
    assert isinstance(in_ram.images, torch.Tensor) and torch.equal(in_ram[1][0], changed[1][0])


def test_unzipped_subfolders_compressed_npz_and_unwritable_cache(tmp_path):
    root = str(tmp_path)
    arrays = write_imagenet(root, size=16, per_batch=2, n_val=3, compressed=True)
    folder = os.path.join(root, "Imagenet16")
    os.makedirs(os.path.join(folder, "Imagenet16_train_npz"))
    os.makedirs(os.path.join(folder, "Imagenet16_val_npz"))
    for path in glob.glob(os.path.join(folder, "train_data_batch_*.npz")):
        shutil.move(path, os.path.join(folder, "Imagenet16_train_npz"))
    shutil.move(os.path.join(folder, "val_data.npz"), os.path.join(folder, "Imagenet16_val_npz"))
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    ds = build_dataset("ImageNet16", "test", root=root, cache_dir=str(blocker / "cache"))
    assert len(ds) == 3 and ds[0][0].shape == (3, 16, 16)
    assert torch.allclose(ds[2][0], normalized(arrays["test"][0][2], MEAN, STD), atol=1e-6)
    assert len(build_dataset("ImageNet16", "train", root=root, val_fraction=0.5)) == 10


def test_metadata_without_files():
    meta = describe_dataset("Imagenet32", augment="resnet", in_ram=True)
    assert (meta.in_channels, meta.num_classes, meta.shape) == (3, 1000, (32, 32))
    assert meta.split_sizes == {"train": 1_268_355, "val": 12_812, "test": 50_000}
    assert describe_dataset("ImageNet64", resolution=32).shape == (32, 32)
    assert describe_dataset("ImageNet16", val_source="test").split_sizes["val"] == 50_000


def test_resnet_augmentation_pads_by_an_eighth(inet8):
    root, _ = inet8
    ds = build_dataset("ImageNet8", "train", root=root, augment="resnet", val_fraction=0.25)
    crop = [t for t in ds.transform.transforms if type(t).__name__ == "RandomCrop"][0]
    assert crop.padding == 1 and crop.size == (8, 8)


def test_missing_wrong_and_corrupt_files(tmp_path):
    root = str(tmp_path)
    with pytest.raises(MissingDatasetError, match=r"Imagenet32.*val_data\.npz.*image-net\.org"):
        build_dataset("ImageNet32", "test", root=root)
    with pytest.raises(MissingDatasetError, match="cannot be downloaded automatically"):
        build_dataset("ImageNet32", "test", root=root, download=True)
    # 16 px batches in the 8 px folder.
    write_imagenet(root, size=16, per_batch=2, n_val=2, folder_name="Imagenet8")
    with pytest.raises(CorruptDatasetError, match=r"val_data\.npz.*right resolution"):
        build_dataset("ImageNet8", "test", root=root)
    write_imagenet(root, size=8, per_batch=2, n_val=2)
    truncate(os.path.join(root, "Imagenet8", "train_data_batch_7.npz"))
    with pytest.raises(CorruptDatasetError, match=r"train_data_batch_7\.npz"):
        build_dataset("ImageNet8", "train", root=root, val_fraction=0.5)
    assert not glob.glob(os.path.join(root, "Imagenet8", "flexcore_cache", "*train*"))  # no half-written cache
    np.savez(os.path.join(root, "Imagenet8", "val_data.npz"), data=np.zeros((2, 192), np.uint8), labels=[0, 1])
    with pytest.raises(CorruptDatasetError, match=r"labels outside 1\.\.1000"):
        build_dataset("ImageNet8", "test", root=root)


def test_pickling_sends_the_cache_path_not_the_mapped_split(inet8):
    import pickle

    root, _ = inet8
    ds = build_dataset("ImageNet8", "train", root=root, val_fraction=0.25)
    assert ds.__getstate__()["images"] == ("memmap", ds.images.filename)  # no copy of the pixels
    clone = pickle.loads(pickle.dumps(ds))
    assert isinstance(clone.images, np.memmap) and clone.images.filename == ds.images.filename
    assert torch.equal(clone[5][0], ds[5][0]) and clone[5][1] == ds[5][1]
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context="spawn")
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 8, 8) and torch.equal(x[3], ds[3][0])


def test_interrupted_conversion_resumes_after_the_last_batch_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    root = str(tmp_path / "data")
    write_imagenet(root, size=8, per_batch=3, n_val=2)
    reference = build_dataset("ImageNet8", "train", root=root, val_fraction=0.25, cache_dir=str(tmp_path / "ref"))
    real_read, reads, interrupt = ImageNet8._read_npz, [], [True]

    def interrupted_at_batch_4(self, path):
        reads.append(os.path.basename(path))
        if len(reads) == 4 and interrupt and interrupt.pop():
            raise KeyboardInterrupt  # what Ctrl-C raises mid-conversion
        return real_read(self, path)

    monkeypatch.setattr(ImageNet8, "_read_npz", interrupted_at_batch_4)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        build_dataset("ImageNet8", "train", root=root, val_fraction=0.25, cache_dir=str(cache))
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == [
        "images.npy.partial.npy", "images.npy.progress.json", "labels.npy.partial.npy"]
    reads.clear()
    resumed = build_dataset("ImageNet8", "train", root=root, val_fraction=0.25, cache_dir=str(cache))
    assert reads == [f"train_data_batch_{i}.npz" for i in range(4, 11)]  # batches 1-3 were kept
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == ["images.npy", "labels.npy"]
    assert np.array_equal(np.asarray(resumed.images), np.asarray(reference.images))
    assert resumed._target_list == reference._target_list

"""Checks every image dataset shares: registry contract, describe(), missing-root errors, downloads."""
import hashlib
import os
import tarfile

import pytest

from flexcore.data import ImageClassificationDataset, MissingDatasetError, build_dataset, describe_dataset
from flexcore.data.cifar import CIFAR10
from flexcore.data.mnist import MNIST
from flexcore.registry import DATASETS
from published_formats import write_cifar10, write_mnist

FILE_BACKED = [n for n, cls in DATASETS if isinstance(cls, type) and issubclass(cls, ImageClassificationDataset)]


def test_every_paper_image_dataset_is_registered():
    expected = {
        "CIFAR10", "CIFAR100", "MNIST", "SMNIST", "PMNIST", "SCIFAR10", "NoisePaddedCIFAR10", "STL10",
        "ImageNet8", "ImageNet16", "ImageNet32", "ImageNet64",
    }
    assert expected <= set(FILE_BACKED)
    assert "Digits" in DATASETS


@pytest.mark.parametrize("name", FILE_BACKED + ["Digits"])
def test_describe_ignores_non_metadata_options_and_is_consistent(name):
    meta = describe_dataset(name)
    assert meta == describe_dataset(name, root="/nowhere", augment="resnet", download=False, blur_sigma=1.0)
    assert meta.name == DATASETS._resolve(name)  # noqa: SLF001
    assert meta.in_channels >= 1 and meta.num_classes >= 10 and meta.dim in (1, 2)
    assert set(meta.split_sizes) == {"train", "val", "test"}
    assert meta.extras["mean"] is not None and len(meta.extras["mean"]) in (1, 3)


@pytest.mark.parametrize("name", FILE_BACKED)
def test_missing_root_names_dataset_folder_and_source(name, tmp_path):
    with pytest.raises(MissingDatasetError) as err:
        build_dataset(name, "test", root=str(tmp_path))
    msg = str(err.value)
    cls = DATASETS.get_raw(name)
    assert msg.startswith(cls.__name__) and cls.SUBDIRS[0] in msg and str(tmp_path) in msg
    assert "http" in msg and "FLEXCORE_DATASETS" in msg


def _tarball(src_root, folder, out):
    with tarfile.open(out, "w:gz") as archive:
        archive.add(os.path.join(src_root, folder), arcname=folder)
    return "file://" + out, hashlib.md5(open(out, "rb").read()).hexdigest()


def test_download_fetches_checks_and_unpacks(tmp_path, monkeypatch):
    """The download path run against file:// URLs: the real code, no network."""
    src = tmp_path / "published"
    write_cifar10(str(src))
    url, md5 = _tarball(str(src), "cifar-10-batches-py", str(tmp_path / "cifar-10-python.tar.gz"))
    monkeypatch.setattr(CIFAR10, "DOWNLOADS", ((url, "cifar-10-python.tar.gz", md5),))
    root = tmp_path / "root"
    with pytest.raises(MissingDatasetError):  # no download unless asked
        build_dataset("cifar10", "test", root=str(root))
    assert len(build_dataset("cifar10", "test", root=str(root), download=True)) == 10
    assert (root / "cifar-10-batches-py" / "batches.meta").exists()

    monkeypatch.setattr(CIFAR10, "DOWNLOADS", ((url, "cifar-10-python.tar.gz", "0" * 32),))
    with pytest.raises(MissingDatasetError, match="MD5"):
        build_dataset("cifar10", "test", root=str(tmp_path / "other"), download=True)
    assert not (tmp_path / "other" / "cifar-10-python.tar.gz.part").exists()

    write_mnist(str(src), compress=True)
    raw = src / "MNIST" / "raw"
    files = tuple(
        ("file://" + str(raw / n), n, hashlib.md5((raw / n).read_bytes()).hexdigest()) for n in sorted(os.listdir(raw))
    )
    monkeypatch.setattr(MNIST, "DOWNLOADS", files)
    ds = build_dataset("MNIST", "train", root=str(root), download=True)
    assert len(ds) == 27 and (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()

import pytest
import torch

from flexcore.data import build_dataset, describe_dataset
from flexcore.data.sequential_images import padding_noise
from published_formats import normalized, write_cifar10

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("c10seq"))
    return root, write_cifar10(root)


def test_scifar10_flattens_rows(cifar10):
    root, arrays = cifar10
    ds = build_dataset("sCIFAR10", "test", root=root)
    x, y = ds[3]
    assert x.shape == (3, 1024) and y == arrays["test"][1][3]
    assert torch.allclose(x, normalized(arrays["test"][0][3], MEAN, STD).reshape(3, 1024), atol=1e-6)
    assert ds.metadata.shape == (1024,) and ds.metadata.in_channels == 3
    assert ds.metadata == describe_dataset("SCIFAR10")
    assert build_dataset("scifar10", "test", root=root, resolution=16)[0][0].shape == (3, 256)


def test_noise_padded_layout_matches_the_original(cifar10):
    root, arrays = cifar10
    ds = build_dataset("NoisePaddedCIFAR10", "test", root=root)
    x, _ = ds[1]
    assert x.shape == (96, 1000) and x.dtype == torch.float32
    img = normalized(arrays["test"][0][1], MEAN, STD)
    # The original: inputs.permute(0, 2, 1, 3).reshape(B, 32, 96), cat noise (1, 968, 96), permute(0, 2, 1).
    noise = torch.randn(1, 968, 96, generator=torch.Generator().manual_seed(0))
    ref = torch.cat([img[None].permute(0, 2, 1, 3).reshape(1, 32, 96), noise], dim=1).permute(0, 2, 1)[0]
    assert torch.allclose(x, ref, atol=1e-6)
    # Feature c*32+w of step h is pixel (c, h, w).
    assert torch.allclose(x[2 * 32 + 5, 7], img[2, 7, 5])
    meta = ds.metadata
    assert (meta.in_channels, meta.shape, meta.num_classes) == (96, (1000,), 10)
    assert meta == describe_dataset("NoisePaddedCIFAR10")


def test_noise_is_fixed_across_samples_splits_and_seeded(cifar10):
    root, _ = cifar10
    test = build_dataset("NoisePaddedCIFAR10", "test", root=root)
    train = build_dataset("NoisePaddedCIFAR10", "train", root=root)
    assert torch.equal(test[0][0][:, 32:], test[5][0][:, 32:])
    assert torch.equal(test[0][0][:, 32:], train[0][0][:, 32:])
    assert torch.equal(test.noise, padding_noise(96, 968, 0))
    other = build_dataset("NoisePaddedCIFAR10", "test", root=root, noise_seed=3)
    assert not torch.equal(other.noise, test.noise) and other.metadata.extras["noise_seed"] == 3
    with pytest.raises(ValueError, match="32x32"):
        describe_dataset("NoisePaddedCIFAR10", resolution=16)

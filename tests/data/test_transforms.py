import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from flexcore.data import transforms as T


def _uint8_image(seed=0, c=3, h=32, w=32):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (c, h, w), dtype=np.uint8))


# -- blur ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma,size", [(0.5, 5), (1.0, 7), (1.2, 9), (1.5, 11), (2.0, 13)])
def test_blur_kernel_size_is_reference_formula(sigma, size):
    assert T.blur_kernel_size(sigma) == size == 2 * math.ceil(3 * sigma) + 1


def test_gaussian_kernel_taps_follow_the_formula():
    taps = T.gaussian_kernel1d(1.0)
    x = torch.arange(7, dtype=torch.float64) - 3
    ref = torch.exp(-x**2 / 2)
    assert torch.allclose(taps.double(), ref / ref.sum(), atol=1e-7)
    assert abs(float(taps.sum()) - 1) < 1e-6


def test_gaussian_blur_matches_torchvision_and_batches():
    import torchvision.transforms.functional as TF

    img = T.to_float_image(_uint8_image())
    for sigma in (0.6, 1.0, 1.7):
        k = T.blur_kernel_size(sigma)
        ref = TF.gaussian_blur(img, [k, k], [sigma, sigma])
        assert torch.allclose(T.gaussian_blur(img, sigma), ref, atol=1e-6)
    batch = torch.stack([img, img.flip(-1)])
    assert torch.allclose(T.gaussian_blur(batch, 1.0)[1], T.gaussian_blur(img.flip(-1), 1.0), atol=1e-6)


def test_gaussian_blur_rejects_kernels_larger_than_the_image():
    with pytest.raises(ValueError, match="too large"):
        T.gaussian_blur(torch.zeros(1, 8, 8), sigma=3.0)


# -- resize ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [16, 20, 28, (24, 40), 48, 64])
def test_nearest_resize_is_pils_exactly(size):
    img = _uint8_image(1)
    hw = T.as_size(size)
    pil = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((hw[1], hw[0]), Image.NEAREST)
    ours = T.resize(img, size, "nearest")
    assert torch.equal(ours, torch.from_numpy(np.array(pil)).permute(2, 0, 1))


@pytest.mark.parametrize("size", [16, 20, 48])
def test_bilinear_resize_is_pils_antialiased_bilinear_up_to_rounding(size):
    img = _uint8_image(2)
    pil = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((size, size), Image.BILINEAR)
    pil = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    ours = T.resize(T.to_float_image(img), size, "bilinear")
    # PIL rounds to uint8: at most one level apart.
    assert (ours - pil).abs().max() <= 1.0 / 255 + 1e-5
    assert (ours - pil).abs().mean() < 0.5 / 255


def test_resize_batched_equals_per_image_and_same_size_is_identity():
    batch = T.to_float_image(torch.stack([_uint8_image(3), _uint8_image(4)]))
    out = T.resize(batch, 16)
    assert out.shape == (2, 3, 16, 16)
    assert torch.allclose(out[1], T.resize(batch[1], 16), atol=1e-6)
    assert T.resize(batch, 32) is batch
    with pytest.raises(ValueError, match="interpolation"):
        T.resize(batch, 16, "bicubic")


def test_normalize_formula_per_channel():
    x = torch.rand(2, 3, 4, 4)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = T.normalize(x, mean, std)
    for c in range(3):
        assert torch.allclose(out[:, c], (x[:, c] - mean[c]) / std[c])


# -- random transforms -----------------------------------------------------------------------
def test_flip_and_crop_geometry():
    img = T.to_float_image(_uint8_image(5))
    assert torch.equal(T.RandomHorizontalFlip(p=1.0)(img), img.flip(-1))
    assert torch.equal(T.RandomHorizontalFlip(p=0.0)(img), img)
    random.seed(0)
    crop = T.RandomCrop(32, padding=4)
    padded = torch.nn.functional.pad(img, (4, 4, 4, 4))
    for _ in range(5):
        out = crop(img)
        assert out.shape == (3, 32, 32)
        windows = [(i, j) for i in range(9) for j in range(9) if torch.equal(padded[:, i : i + 32, j : j + 32], out)]
        assert windows, "the crop must be a window of the zero-padded image"


def test_cutout_zeroes_one_clipped_square():
    random.seed(1)
    x = torch.ones(3, 32, 32)
    for _ in range(20):
        out = T.Cutout(1, 16)(x)
        zero = out[0] == 0
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols) <= 16 * 16  # one axis-aligned rectangle
        assert torch.equal(out[0] == 0, out[2] == 0)  # same hole in every channel
    odd = T.Cutout(1, 5)
    holes = [int((odd(x)[0] == 0).sum()) for _ in range(50)]
    assert max(holes) == 16  # odd length L gives (L-1)^2 holes, as the reference's Cutout


def test_random_erasing_mnist_setting_erases_an_11px_square():
    random.seed(2)
    erase = T.RandomErasing(p=1.0, scale=(4 / 28, 4 / 28), ratio=(1.0, 1.0), value=0.0)
    out = erase(torch.ones(1, 28, 28))
    assert int((out == 0).sum()) == 11 * 11  # round(sqrt(784 * 4/28)) = 11


def test_standard_augmentation_keeps_shape_and_is_seeded():
    img = T.to_float_image(_uint8_image(6, c=1, h=28, w=28))
    tf = T.build_image_transform((0.1307,), (0.3081,), (28, 28), augment="standard")
    random.seed(3)
    a = [tf(img) for _ in range(8)]
    random.seed(3)
    b = [tf(img) for _ in range(8)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == (1, 28, 28) for x in a)
    assert any(not torch.equal(a[0], x) for x in a[1:])


def test_pipeline_order_blur_augment_normalize_erase_resize():
    tf = T.build_image_transform(
        (0.5,) * 3, (0.25,) * 3, (32, 32), augment="cutout", resolution=16, blur_sigma=1.0
    )
    names = [type(t).__name__ if not hasattr(t, "name") else t.name for t in tf.transforms]
    assert names == ["ToFloat", "GaussianBlur", "RandomHorizontalFlip", "RandomCrop", "Normalize", "Cutout", "Resize"]
    out = tf(_uint8_image(7))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    # Without blur, flips and crops run on the uint8 values; normalising makes them float.
    tf = T.build_image_transform((0.5,) * 3, (0.25,) * 3, (32, 32), augment="resnet")
    assert [type(t).__name__ for t in tf.transforms] == ["RandomHorizontalFlip", "RandomCrop", "Normalize"]
    random.seed(4)
    on_uint8 = tf(_uint8_image(7))
    random.seed(4)
    on_float = tf(_uint8_image(7).float() / 255)
    assert on_uint8.dtype == torch.float32 and torch.allclose(on_uint8, on_float, atol=1e-6)


def test_normalize_stage_fuses_scaling_and_matches_the_formula():
    img = _uint8_image(9)
    stage = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    ref = T.normalize(img.float() / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.allclose(stage(img), ref, atol=1e-6) and torch.allclose(stage(img.float() / 255), ref, atol=1e-6)
    assert torch.allclose(T.Normalize(None, None)(img), img.float() / 255)
    digits = T.Normalize((0.3,), (0.4,), scale=16.0)
    assert torch.allclose(digits(torch.full((1, 2, 2), 8, dtype=torch.uint8)), torch.full((1, 2, 2), 0.5))


def test_deterministic_pipeline_matches_formulas():
    img = _uint8_image(8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    tf = T.build_image_transform(mean, std, 32, resolution=20, interpolation="nearest", blur_sigma=0.8)
    expected = T.normalize(T.resize(T.gaussian_blur(img.float() / 255, 0.8), 20, "nearest"), mean, std)
    assert torch.allclose(tf(img), expected, atol=1e-6)
    # Deterministic stages also run on batches.
    batch = torch.stack([img, img])
    assert torch.allclose(tf(batch)[1], expected, atol=1e-6)


def test_unknown_augmentation_and_callable_augmentation():
    with pytest.raises(ValueError, match="resnet"):
        T.build_image_transform(None, None, 32, augment="autoaugment")
    tf = T.build_image_transform(None, None, 8, augment=lambda x: 1 - x)
    x = torch.rand(1, 8, 8)
    assert torch.allclose(tf(x), 1 - x)
    assert T.augmentation_stages(None, 8) == ([], [])
    assert T.augmentation_stages("None", 8) == ([], [])


@pytest.mark.parametrize("n_in,n_out", [(32, 16), (32, 20), (16, 32), (96, 48), (8, 32)])
def test_bilinear_resize_matrices_equal_torch_antialiased_interpolate(n_in, n_out):
    x = torch.rand(2, 3, n_in, n_in + 4)
    ref = torch.nn.functional.interpolate(x, size=(n_out, n_out + 3), mode="bilinear", antialias=True)
    assert torch.allclose(T.resize(x, (n_out, n_out + 3)), ref, atol=3e-6)


@pytest.mark.gpu
def test_batched_deterministic_stages_run_on_the_gpu():
    batch = torch.rand(4, 3, 32, 32)
    cuda = batch.cuda()
    for fn in (
        lambda x: T.resize(x, 16),
        lambda x: T.resize(x, 20, "nearest"),
        lambda x: T.gaussian_blur(x, 1.0),
        lambda x: T.normalize(x, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)),
        lambda x: T.Normalize((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))(x),
    ):
        out = fn(cuda)
        assert out.is_cuda and torch.allclose(out.cpu(), fn(batch), atol=1e-5)

import math

import pytest
import torch

from flexcore.layers import functional as FC
from flexcore.layers.masks import GaussianMask, HannMask, NoMask, SigmoidMask
from flexcore.registry import MASKS


def _gauss(p, mean, sigma):
    return math.exp(-0.5 * ((p - mean) / sigma) ** 2)


def test_registry_lists_the_masks():
    assert set(MASKS.list()) >= {"GaussianMask", "SigmoidMask", "HannMask", "NoMask"}


def test_gaussian_values_match_closed_form_2d():
    mask = GaussianMask(2)
    with torch.no_grad():
        mask.mean.copy_(torch.tensor([0.2, -0.1]))
        mask.sigma.copy_(torch.tensor([0.1, 0.25]))
    grid = FC.rel_positions((9, 7))
    values = mask(grid)
    assert values.shape == (1, 1, 9, 7)
    for i, py in enumerate(torch.linspace(-1, 1, 9).tolist()):
        for j, px in enumerate(torch.linspace(-1, 1, 7).tolist()):
            expected = _gauss(py, 0.2, 0.1) * _gauss(px, -0.1, 0.25)
            assert values[0, 0, i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_gaussian_init_and_buffers():
    m2 = GaussianMask(2)
    assert m2.mean.tolist() == [0.0, 0.0] and m2.sigma.tolist() == pytest.approx([0.075, 0.075])
    m1 = GaussianMask(1, causal=True)
    assert m1.mean.tolist() == [1.0]
    assert m1.threshold.item() == pytest.approx(0.1) and m1.temperature.item() == 15.0
    assert m1.spatial_init_value() == pytest.approx(0.125025)


@pytest.mark.parametrize(
    "sigma,n,size",
    [(0.075, 33, 5), (0.075, 17, 3), (0.075, 97, 15), (0.1, 33, 7), (0.2, 33, 13), (0.3, 33, 21),
     (0.4, 33, 27), (0.466, 33, 33), (0.6, 33, 33)],
)
def test_gaussian_crop_matches_reference_examples(sigma, n, size):
    mask = GaussianMask(2, init_value=sigma)
    slices = mask.crop_bounds(FC.rel_positions((n, n)))
    assert [s.stop - s.start for s in slices] == [size, size]
    assert slices[0].start == (n - size) // 2  # centred


def test_gaussian_crop_off_centre_mask_stays_symmetric():
    # the fixture case flexconv2d_magnet_asym_mask: rows (0.2, 0.1), (-0.1, 0.25) -> 13 x 21
    mask = GaussianMask(2)
    with torch.no_grad():
        mask.mean.copy_(torch.tensor([0.2, -0.1]))
        mask.sigma.copy_(torch.tensor([0.1, -0.25]))  # the sign of sigma is irrelevant
    slices = mask.crop_bounds(FC.rel_positions((33, 33)))
    assert [(s.start, s.stop) for s in slices] == [(10, 23), (6, 27)]


def test_causal_crop_keeps_only_the_recent_past():
    mask = GaussianMask(1, causal=True)  # mean 1, sigma 0.075: support from 1 - 0.161
    grid = FC.rel_positions((784,))
    (s,) = mask.crop_bounds(grid)
    coords = grid[0, 0]
    assert s.stop == 784
    lower = 1.0 - 0.075 * math.sqrt(-2 * math.log(0.1))
    assert coords[s.start] > lower >= coords[s.start - 1]
    assert s.stop - s.start == 64  # the flexconv1d_causal_fft fixture's kernel length
    # a mask reaching past -1 keeps everything
    with torch.no_grad():
        mask.sigma.fill_(2.0)
    assert mask.crop_bounds(grid) == (slice(0, 784),)


def test_crop_never_empty():
    mask = GaussianMask(2, init_value=1e-4)
    for n in (33, 32):
        slices = mask.crop_bounds(FC.rel_positions((n, n)))
        assert all(s.stop - s.start >= 1 for s in slices)


@pytest.mark.parametrize("cls", [GaussianMask, SigmoidMask, HannMask])
@pytest.mark.parametrize("dim,causal", [(1, False), (1, True), (2, False), (3, False)])
def test_gradients_reach_mean_and_width(cls, dim, causal):
    mask = cls(dim, causal=causal, init_value=0.3)
    grid = FC.rel_positions((15,) * dim)
    (mask(grid) * torch.linspace(0.5, 1.5, 15 ** dim).view(mask(grid).shape)).sum().backward()
    width = mask.sigma if cls is GaussianMask else mask.width
    assert mask.mean.grad is not None and width.grad is not None
    assert torch.all(mask.mean.grad != 0) and torch.all(width.grad != 0)


@pytest.mark.parametrize("cls", [GaussianMask, SigmoidMask, HannMask])
def test_crop_bounds_contain_everything_above_threshold(cls):
    torch.manual_seed(0)
    for _ in range(5):
        mask = cls(2, init_value=float(torch.rand(1)) * 0.5 + 0.05)
        with torch.no_grad():
            mask.mean.uniform_(-0.3, 0.3)
        grid = FC.rel_positions((41, 41))
        values = mask(grid)[0, 0]
        slices = mask.crop_bounds(grid)
        outside = values.clone()
        outside[slices] = 0
        assert outside.max() < mask.threshold.item() + 1e-6


def test_sigmoid_and_hann_closed_forms():
    sig = SigmoidMask(1, init_value=0.2, temperature=10.0)
    p = torch.tensor([[[-0.5, 0.0, 0.3]]])
    expected = [1 / (1 + math.exp(-10 * (x + 0.2))) / (1 + math.exp(10 * (x - 0.2))) for x in p.flatten().tolist()]
    assert sig(p).flatten().tolist() == pytest.approx(expected, rel=1e-5)
    causal = SigmoidMask(1, causal=True, init_value=0.2, temperature=10.0)
    assert causal(torch.tensor([[[1.0]]])).item() == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-5)
    hann = HannMask(1, init_value=0.5)
    q = torch.tensor([[[-0.6, -0.25, 0.0, 0.4]]])
    expected = [math.cos(math.pi * x / 1.0) ** 2 if abs(x) < 0.5 else 0.0 for x in q.flatten().tolist()]
    assert hann(q).flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_no_mask_is_ones_and_never_crops():
    mask = NoMask(2)
    grid = FC.rel_positions((5, 7))
    assert torch.equal(mask(grid), torch.ones(1, 1, 5, 7))
    assert mask.crop_bounds(grid) == (slice(0, 5), slice(0, 7))
    assert not list(mask.parameters())


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(dim=4), "dim must be 1, 2 or 3"), (dict(dim=2, causal=True), "causal masks are 1-D"),
     (dict(dim=2, init_value=0.0), "init_value"), (dict(dim=2, threshold=1.5), "threshold")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMask(**kwargs)


def test_wrong_positions_shape():
    with pytest.raises(ValueError, match=r"GaussianMask\(dim=2\).*\(1, 2, \*grid\)"):
        GaussianMask(2)(torch.zeros(1, 1, 5))

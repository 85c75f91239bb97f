import itertools

import pytest
import torch
import torch.nn.functional as F

from flexcore.layers import functional as FC
from flexcore.layers.fft_cost import next_fast_len


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_rel_positions_bit_exact_with_linspace_meshgrid():
    for sizes in [(33,), (33, 33), (97, 5), (4, 6, 3), (161,)]:
        grid = FC.rel_positions(sizes)
        assert grid.shape == (1, len(sizes), *sizes) and grid.dtype == torch.float32
        coords = [torch.linspace(-1, 1, n) for n in sizes]
        expected = torch.stack(torch.meshgrid(*coords, indexing="ij")).unsqueeze(0)
        assert torch.equal(grid, expected)
    grid = FC.rel_positions((3, 5))
    assert grid[0, 0, :, 0].tolist() == [-1.0, 0.0, 1.0]  # channel 0 varies along rows
    assert grid[0, 1, 0, :].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]


CASES = [
    # dims, input size, kernel size, causal
    (1, (40,), (7,), False), (1, (40,), (8,), False), (1, (41,), (8,), True), (1, (40,), (7,), True),
    (1, (33,), (64,), True),  # kernel longer than the sequence
    (2, (16, 16), (5, 5), False), (2, (15, 17), (4, 6), False), (2, (16, 12), (13, 21), False),
    (2, (9, 9), (17, 17), False),  # kernel larger than the image ('full' horizon)
    (3, (6, 7, 5), (3, 4, 5), False),
]


@pytest.mark.parametrize("dims,spatial,ksize,causal", CASES)
@pytest.mark.parametrize("stride", [1, 2])
def test_fft_matches_spatial(dims, spatial, ksize, causal, stride):
    torch.manual_seed(0)
    x = torch.randn(1, 3, *spatial)  # batch 1
    w = torch.randn(4, 3, *ksize)
    b = torch.randn(4)
    ref = FC.conv(x, w, b, stride, "same", causal, fft=False)
    out = FC.conv(x, w, b, stride, "same", causal, fft=True)
    assert out.shape == ref.shape
    assert _rel_err(out, ref) < 1e-5
    if stride == 1:
        assert ref.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("padding", ["valid", 2, (1, 3), ((0, 4), (3, 1))])
def test_fft_matches_spatial_explicit_padding(padding):
    torch.manual_seed(1)
    x, w = torch.randn(2, 3, 14, 11), torch.randn(5, 3, 5, 4)
    ref = FC.conv(x, w, None, (2, 1), padding, fft=False)
    assert _rel_err(FC.conv(x, w, None, (2, 1), padding, fft=True), ref) < 1e-5


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_spatial_same_matches_torch_same_padding():
    x, w = torch.randn(2, 3, 15, 16), torch.randn(4, 3, 4, 5)
    assert torch.allclose(FC.conv(x, w, None, 1, "same", fft=False), F.conv2d(x, w, padding="same"), atol=1e-6)


def test_causal_semantics():
    # output t depends on x[:t+1] only; the last tap multiplies x[t] ("now")
    x = torch.zeros(1, 1, 10)
    x[0, 0, 4] = 1.0
    w = torch.arange(1.0, 7.0).view(1, 1, 6)  # even length: the original's leading zero tap changes nothing
    for fft in (False, True):
        y = FC.conv(x, w, None, 1, "same", causal=True, fft=fft)[0, 0]
        assert torch.allclose(y[:4], torch.zeros(4), atol=1e-6)
        assert torch.allclose(y[4:], torch.tensor([6.0, 5, 4, 3, 2, 1]), atol=1e-5)
    # the original's explicit form: prepend a zero tap, left-pad by K-1 of the odd kernel
    w_odd = F.pad(w, (1, 0))
    original = F.conv1d(F.pad(x, (6, 0)), w_odd)
    assert torch.allclose(FC.conv(x, w, None, 1, "same", causal=True, fft=False), original)


def test_grouped_and_depthwise_fft():
    torch.manual_seed(2)
    x = torch.randn(2, 6, 12, 12)
    for groups, w in [(2, torch.randn(4, 3, 5, 5)), (6, torch.randn(6, 1, 7, 7))]:
        ref = FC.conv(x, w, None, 1, "same", groups=groups, fft=False)
        assert _rel_err(FC.conv(x, w, None, 1, "same", groups=groups, fft=True), ref) < 1e-5


def test_fft_gradients_match_spatial():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 12, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    grads = []
    for fft in (False, True):
        (FC.conv(x, w, None, 1, "same", fft=fft) ** 2).sum().backward()
        grads.append((x.grad.clone(), w.grad.clone()))
        x.grad = w.grad = None
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-9, atol=1e-9)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-9, atol=1e-9)


def test_half_precision_fft_runs_in_float32():
    x, w = torch.randn(1, 2, 16, 16).bfloat16(), torch.randn(3, 2, 9, 9).bfloat16()
    y = FC.conv(x, w, None, 1, "same", fft=True)
    assert y.dtype == torch.bfloat16
    ref = FC.conv(x.float(), w.float(), None, 1, "same", fft=False)
    assert _rel_err(y.float(), ref) < 1e-2


def test_next_fast_len():
    assert [next_fast_len(n) for n in (1, 2, 3, 17, 33, 48, 49, 97, 1000, 1025)] == [1, 2, 4, 18, 36, 48, 50, 98, 1000, 1050]
    for n in range(2, 300):
        m = next_fast_len(n)
        assert m >= n and m % 2 == 0
        rest = m
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        assert rest == 1


def test_auto_picks_a_path_and_agrees():
    x = torch.randn(2, 4, 32, 32)
    for k in (3, 33):
        w = torch.randn(4, 4, k, k)
        assert _rel_err(FC.conv(x, w, None, 1, "same", fft="auto"), FC.conv(x, w, None, 1, "same", fft=False)) < 1e-5


@pytest.mark.parametrize("bad,match", [("full", "padding must be"), (-1, "non-negative"), ((1, 2, 3), "entries")])
def test_bad_padding(bad, match):
    with pytest.raises(ValueError, match=match):
        FC.resolve_padding(bad, (3, 3))


def test_causal_rejects_explicit_padding():
    with pytest.raises(ValueError, match="causal"):
        FC.resolve_padding(2, (3,), causal=True)

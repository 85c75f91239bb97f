"""Direct convolutions with kernels larger than their input: no crash, exact results.

oneDNN's CPU weight gradient corrupts memory for some of these shapes (33x7 on 16x16 aborted
the interpreter on the development CPU), so the sweep runs in subprocesses: a crash fails a
test instead of killing pytest.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.layers import Conv, FlexConv
from flexcore.layers import functional as FC

WORKER = Path(__file__).with_name("shape_sweep_worker.py")


@pytest.mark.parametrize("threads", [1, 2])
def test_shape_sweep_runs_without_crash_in_a_subprocess(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(WORKER), str(threads)], capture_output=True, text=True, env=env,
                          timeout=600)
    last = proc.stdout.strip().splitlines()[-1:] or ["(nothing)"]
    assert proc.returncode == 0, (f"shape sweep died with {proc.returncode} at: {last[0]}\n"
                                  f"{proc.stderr[-3000:]}")
    assert last == ["sweep done"]


def test_guard_condition_from_shapes():
    assert FC.needs_explicit_padding((16, 16), (33, 7), [(16, 16), (3, 3)])  # the measured crash
    assert FC.needs_explicit_padding((16, 16), (3, 3), [(8, 8), (1, 1)])  # wide int padding
    assert FC.needs_explicit_padding((16,), (17,), [(8, 8)])  # kernel larger than the input
    assert not FC.needs_explicit_padding((16, 16), (15, 15), [(7, 7), (7, 7)])
    assert not FC.needs_explicit_padding((32, 32), (31, 31), [(15, 15), (15, 15)])
    taps, pads = FC.overlapping_taps((16, 16), (33, 7), [(16, 16), (3, 3)], (1, 1))
    assert taps == (slice(1, 32), slice(0, 7)) and pads == [(15, 15), (3, 3)]  # rows 0, 32 never meet the input


@pytest.mark.parametrize("spatial,ksize,pads,stride", [
    ((16, 16), (33, 7), [(16, 16), (3, 3)], (1, 1)),
    ((9, 12), (40, 5), [(19, 20), (2, 2)], (2, 1)),
    ((5,), (65,), [(32, 32)], (1,)),
    ((7,), (64,), [(63, 0)], (3,)),  # causal
    ((4, 5, 3), (9, 2, 11), [(4, 4), (0, 1), (5, 5)], (1, 2, 1)),
    ((6, 6), (3, 3), [(9, 2), (1, 7)], (2, 2)),  # padding wider than the input
])
def test_cropped_taps_are_exact_forward_and_backward(spatial, ksize, pads, stride):
    """The guarded call equals the plain implicit-padding one (float64: no oneDNN kernel runs),
    and cropped-away taps get the zero gradient they get uncropped."""
    taps, _ = FC.overlapping_taps(spatial, ksize, pads, stride)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *spatial, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, *ksize, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    conv = (F.conv1d, F.conv2d, F.conv3d)[len(spatial) - 1]
    x_ref, w_ref, b_ref = (t.detach().clone().requires_grad_() for t in (x, w, b))
    want = conv(F.pad(x_ref, FC._flat_pad(pads)), w_ref, b_ref, stride=stride)
    got = FC.conv_spatial(x, w, b, stride, pads)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    want.backward(g)
    got.backward(g)
    for ours, ref in ((x, x_ref), (w, w_ref), (b, b_ref)):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-12, atol=1e-12)
    outside = torch.ones_like(w.grad, dtype=torch.bool)
    outside[(slice(None), slice(None), *taps)] = False
    assert (w.grad[outside] == 0).all()


def test_crash_shape_in_float32_matches_float64():
    """The measured crash shape in float32 (oneDNN kernels, guarded): equal to float64."""
    torch.manual_seed(0)
    x = torch.randn(2, 24, 16, 16, requires_grad=True)
    w = torch.randn(24, 24, 33, 7, requires_grad=True)
    y = FC.conv(x, w, None, 1, "same", fft=False)
    y.square().sum().backward()
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    FC.conv(x64, w64, None, 1, "same", fft=False).square().sum().backward()
    torch.testing.assert_close(y.double(), FC.conv(x64, w64, None, 1, "same", fft=False).detach(),
                               rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-2)
    assert (w.grad[:, :, [0, 32]] == 0).all()  # rows 0 and 32 never meet a 16-row input


def test_bake_keeps_a_plain_conv_only_where_implicit_padding_is_safe():
    small = Conv(4, 4, 2, kernel_size=5, fft=False)
    small(torch.randn(1, 4, 16, 16))
    assert type(small.bake()) is nn.Conv2d
    tall = Conv(4, 4, 2, kernel_size=(33, 7), fft=False)
    x = torch.randn(1, 4, 16, 16)
    want = tall(x)
    baked = tall.bake()
    assert type(baked) is not nn.Conv2d and isinstance(baked, nn.Conv2d)  # a BakedConv2d: explicit padding
    torch.testing.assert_close(baked(x), want)
    unseen = FlexConv(4, 4, 2, horizon=33, fft=False, dynamic_cropping=False)
    assert type(unseen.bake()) is not nn.Conv2d  # input size unknown: padded explicitly

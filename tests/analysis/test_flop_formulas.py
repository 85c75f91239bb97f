"""Counted FLOPs equal hand-derived formulas (MAC convention) for the real layers and a FlexNet.

Notation: B batch, Ci/Co channels, O = Ci*Co kernel-net outputs, n spatial input sizes,
N grid points the kernel net is evaluated on (after cropping), H/L/D MAGNet width, depth, dim.
"""
import math

import pytest
import torch

from flexcore.analysis import flop_report
from flexcore.layers import CKConv, Conv, FlexConv
from flexcore.layers.functional import fft_sizes, resolve_padding
from flexcore.modeling.backbones import FlexNet

pytestmark = pytest.mark.usefixtures("single_thread")


def magnet(points, out, dim, hidden=32, layers=3):
    """MAGNet on N points: L+1 filters (linear D->H, Gaussian window: sub, mul, square, sum over D,
    *-0.5, exp; sine; window*sine) = F*H*N*(5D+4); L hidden layers H->H and products; output H->O."""
    filters = layers + 1
    return points * (filters * hidden * (5 * dim + 4) + layers * (hidden * hidden + hidden) + out * hidden)


def gaussian_mask(points, dim):
    """Per dim on the grid: (1/sigma) (reciprocal, *1.0), -mean, *, **2, *-0.5, exp; then the product."""
    return dim * (5 * points + 2) + (dim - 1) * points


def rfft(points, batch):
    """Real-input (or real-output) FFT: 2.5 N log2 N real ops = 1.25 N log2 N MACs."""
    return 1.25 * batch * points * math.log2(points)


def run(layer, x):
    layer(x)  # fixes the grid ('same' horizon) and the crop
    return flop_report(layer, (x,), strict=True).totals()


@pytest.mark.parametrize("dim,causal", [(1, True), (2, False), (3, False)])
def test_discrete_conv(dim, causal):
    b, ci, co, k = 2, 3, 4, 3
    n = (7,) * dim
    totals = run(Conv(ci, co, dim, causal=causal, kernel_size=k, fft=False), torch.randn(b, ci, *n))
    expected = b * co * ci * k ** dim * math.prod(n)
    assert totals["train"]["total"] == expected
    assert totals["inference"]["total"] == expected


def test_ckconv_spatial():
    b, ci, co, n = 2, 3, 4, (9, 9)
    points, out = math.prod(n), ci * co  # horizon 'same': the grid has the input's size
    totals = run(CKConv(ci, co, 2, fft=False), torch.randn(b, ci, *n))
    kernel = magnet(points, out, 2) + out * points  # kernel net, then * sampling_rate_norm
    conv = b * co * ci * points * math.prod(n)
    assert totals["train"]["kernel_generation"] == kernel
    assert totals["train"]["total"] == kernel + conv
    assert totals["inference"]["total"] == conv


@pytest.mark.parametrize("dim,causal", [(1, True), (2, False)])
def test_ckconv_fft(dim, causal):
    b, ci, co = 2, 3, 4
    n = (12,) * dim
    points, out = math.prod(n), ci * co
    totals = run(CKConv(ci, co, dim, causal=causal, fft=True), torch.randn(b, ci, *n))
    sizes = fft_sizes(n, n, resolve_padding("same", n, causal))  # transform lengths the layer picks
    p = math.prod(sizes)
    bins = math.prod(sizes[:-1]) * (sizes[-1] // 2 + 1)
    conv = (rfft(p, b * ci) + rfft(p, co * ci)  # input and kernel spectra
            + 4 * b * co * ci * bins  # complex channel mixing: 4 real MACs per complex MAC
            + rfft(p, b * co)  # inverse transform
            + b * co * math.prod(n))  # bias add
    kernel = magnet(points, out, dim) + out * points
    assert totals["train"]["total"] == pytest.approx(kernel + conv, rel=1e-12)
    assert totals["inference"]["total"] == pytest.approx(conv, rel=1e-12)


@pytest.mark.parametrize("sigma,crop", [(0.075, 5), (0.2, 13)])
def test_flexconv_at_known_crop_size(sigma, crop):
    b, ci, co, n = 2, 3, 4, (33, 33)
    layer = FlexConv(ci, co, 2, fft=False)
    with torch.no_grad():
        layer.mask.sigma.fill_(sigma)
    x = torch.randn(b, ci, *n)
    layer(x)
    assert layer.kernel_size() == (crop, crop)  # the reference's crop table (t = 0.1)
    points, out = crop * crop, ci * co
    totals = flop_report(layer, (x,), strict=True).totals()
    kernel = magnet(points, out, 2) + out * points + gaussian_mask(points, 2) + out * points  # net, norm, mask, *mask
    conv = b * co * ci * points * math.prod(n)
    assert totals["train"]["kernel_generation"] == kernel
    assert totals["train"]["total"] == kernel + conv
    assert totals["inference"]["total"] == conv


def flexnet_formula(model, b, n, classes, train=True):
    """Stem conv + BN; per block conv, BN, conv, BN, (1x1 shortcut), residual add; pool; 1x1 head."""
    hw = math.prod(n)
    bn = (5 if train else 2) * b * hw  # fvcore's BatchNorm estimate per channel
    total = 0

    def cconv(layer):
        ci, co = layer.in_channels, layer.out_channels
        points = math.prod(layer.kernel_size())
        kernel = magnet(points, ci * co, 2) + 2 * ci * co * points + gaussian_mask(points, 2)
        return (kernel if train else 0) + b * co * ci * points * hw

    total += cconv(model.cconv1) + bn * model.cconv1.out_channels
    for block in model.blocks:
        c = block.cconv1.out_channels
        total += cconv(block.cconv1) + cconv(block.cconv2) + 2 * bn * c + b * c * hw
        if len(block.shortcut):
            total += b * c * block.cconv1.in_channels * hw
    final = model.blocks[-1].cconv2.out_channels
    return total + b * final * hw + b * final * classes


def test_small_flexnet_matches_formula():
    b, n, classes = 2, (16, 16), 10
    model = FlexNet(3, classes, 2, conv=FlexConv, hidden_channels=6, num_blocks=2,
                    block_width_factors=(1.0, 1, 2.0, 1))
    x = torch.randn(b, 3, *n)
    model(x)
    totals = flop_report(model, (x,), strict=True).totals()
    assert totals["train"]["total"] == pytest.approx(flexnet_formula(model, b, n, classes), rel=1e-12)
    assert totals["inference"]["total"] == pytest.approx(flexnet_formula(model, b, n, classes, False), rel=1e-12)

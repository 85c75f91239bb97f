"""Each op handle against its hand-derived count, on plain torch ops."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from flexcore.analysis import FlexcoreFlopCountAnalysis, UncountedOpsError, assert_all_ops_counted, fft_cost

pytestmark = pytest.mark.usefixtures("single_thread")


class Fn(nn.Module):
    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))

    def forward(self, *args):
        return self.fn(self, *args)


def count(fn, *inputs, convention="mac", **params):
    analysis = FlexcoreFlopCountAnalysis(Fn(fn, **params), inputs, convention)
    assert_all_ops_counted(analysis)
    return analysis


@pytest.mark.parametrize("padding", [1, "same"])
def test_conv2d_is_batch_cout_cin_k2_hw(padding):
    b, cin, cout, k, h, w = 2, 3, 5, 3, 7, 6
    x = torch.randn(b, cin, h, w)
    flops = count(lambda m, x: F.conv2d(x, m.weight, padding=padding), x, weight=torch.randn(cout, cin, k, k))
    assert flops.total() == b * cout * cin * k * k * h * w
    assert set(flops.by_operator()) == {"conv"}


def test_grouped_and_1d_conv():
    x = torch.randn(2, 4, 10)
    flops = count(lambda m, x: F.conv1d(x, m.weight, groups=4), x, weight=torch.randn(8, 1, 5))
    assert flops.total() == 2 * 8 * 1 * 5 * 6


def test_linear_matmul_bmm_einsum():
    x = torch.randn(2, 5, 4)
    assert count(lambda m, x: F.linear(x, m.weight), x, weight=torch.randn(3, 4)).total() == 2 * 5 * 3 * 4
    assert count(lambda m, x: x @ x.transpose(1, 2), x).total() == 2 * 5 * 5 * 4
    assert count(lambda m, x: torch.bmm(x, x.transpose(1, 2)), x).total() == 2 * 5 * 5 * 4
    assert count(lambda m, x: x[0, 0] @ x[0, 1], x).total() == 4  # 1-D dot: fvcore's handle rejects it
    # Ellipsis einsum: product of every index size.
    y = torch.randn(2, 3, 4, 4)
    w = torch.randn(6, 3, 4, 4)
    assert count(lambda m, y, w: torch.einsum("bi...,oi...->bo...", y, w), y, w).total() == 2 * 3 * 6 * 16
    # No summed index: a plain elementwise product.
    assert count(lambda m, y: torch.einsum("bihw,bihw->bihw", y, y), y).total() == y.numel()


def test_complex_products_cost_four_real_multiply_adds():
    a = torch.randn(2, 3, 4, 4)
    spec = lambda t: torch.fft.rfftn(t, dim=(-2, -1))  # noqa: E731
    fft = fft_cost(16, 6, real=True, flops_per_mac=1)
    flops = count(lambda m, a: torch.einsum("bihw,bihw->bh", spec(a), spec(a).conj()), a)
    assert flops.by_operator()["einsum"] == 4 * 2 * 3 * 4 * 3  # complex MACs over (b, i, h, w//2+1)
    assert flops.by_operator()["fft_rfftn"] == pytest.approx(2 * fft)
    prod = count(lambda m, a: torch.view_as_real(spec(a) * spec(a).conj()), a)
    assert prod.by_operator()["mul"] == 4 * 2 * 3 * 4 * 3
    scaled = count(lambda m, a: torch.view_as_real(spec(a) * 2.0), a)
    assert scaled.by_operator()["mul"] == 2 * 2 * 3 * 4 * 3
    flop = count(lambda m, a: torch.view_as_real(spec(a) * spec(a)), a, convention="flop")
    assert flop.by_operator()["mul"] == 6 * 2 * 3 * 4 * 3  # 4 multiplies + 2 adds


def test_fft_cost_is_c_n_log2n():
    x = torch.randn(2, 3, 12, 10)
    n = 120
    real = 2.5 / 2  # MACs per N log2 N of a real transform: FFTW's 5, halved twice
    flops = count(lambda m, x: torch.fft.rfftn(x, dim=(-2, -1)), x)
    assert flops.total() == pytest.approx(real * 6 * n * math.log2(n))
    padded = count(lambda m, x: torch.fft.rfft2(x, s=(16, 16)), x)
    assert padded.total() == pytest.approx(real * 6 * 256 * 8)
    inverse = count(lambda m, x: torch.fft.irfftn(torch.fft.rfftn(x, dim=(-2, -1)), s=(12, 10), dim=(-2, -1)), x)
    assert inverse.by_operator()["fft_irfftn"] == pytest.approx(real * 6 * n * math.log2(n))
    seq = count(lambda m, x: torch.fft.irfft(torch.fft.rfft(x, n=32), n=32), x)
    assert seq.by_operator()["fft_rfft"] == pytest.approx(real * 72 * 32 * 5)
    assert seq.by_operator()["fft_irfft"] == pytest.approx(real * 72 * 32 * 5)
    complex_ = count(lambda m, x: torch.view_as_real(torch.fft.ifftn(torch.fft.fftn(x.to(torch.complex64)))), x)
    assert complex_.by_operator()["fft_ifftn"] == pytest.approx(2.5 * 720 * math.log2(720))
    flop = count(lambda m, x: torch.fft.rfftn(x, dim=(-2, -1)), x, convention="flop")
    assert flop.total() == pytest.approx(2 * flops.total())


def test_elementwise_reductions_and_pools():
    x = torch.randn(2, 3, 8, 8)
    n = x.numel()
    for fn in (torch.sin, torch.cos, torch.exp, torch.sigmoid, torch.sqrt, F.gelu, F.silu, torch.tanh):
        assert count(lambda m, x, fn=fn: fn(x), x).total() == n
    assert count(lambda m, x: x * x + x / 2 - x.pow(2), x).total() == 5 * n  # mul, div, add, pow, sub
    assert count(lambda m, x: x.mean((2, 3)), x).total() == n
    assert count(lambda m, x: x.sum(), x).total() == n
    assert count(lambda m, x: F.avg_pool2d(x, 2), x).total() == n
    assert count(lambda m, x: F.adaptive_avg_pool2d(x, 1), x).total() == n
    assert count(lambda m, x: F.max_pool2d(F.relu(x), 2), x).total() == 0  # comparisons, as fvcore's relu
    seq = torch.randn(2, 3, 16)
    assert count(lambda m, s: F.adaptive_avg_pool1d(s, 1), seq).total() == seq.numel()


def test_grid_padding_indexing_count_zero_on_purpose():
    x = torch.randn(1, 2, 8, 8)

    def grid(m, x):
        g = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5), indexing="ij"))
        return F.pad(x, (2, 2, 2, 2))[:, :, 1:-1, 1:-1].flip(-1) + g.sum() * 0

    flops = count(grid, x)
    assert flops.unsupported_ops() == {}
    assert set(flops.by_operator()) <= {"sum", "mul", "add"}


def test_integer_arithmetic_is_free():
    bn = nn.BatchNorm1d(4).train()
    flops = FlexcoreFlopCountAnalysis(bn, (torch.randn(3, 4),))
    assert_all_ops_counted(flops)
    assert set(flops.by_operator()) == {"batch_norm"}  # num_batches_tracked += 1 is not a FLOP


def test_flop_convention_matches_torch_flop_counter():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten(),
                          nn.Linear(4 * 36, 10))
    x = torch.randn(2, 3, 6, 6)
    with FlopCounterMode(display=False) as counter:
        model(x)
    ours = FlexcoreFlopCountAnalysis(model, (x,), convention="flop")
    assert ours.total() == counter.get_total_flops()
    assert FlexcoreFlopCountAnalysis(model, (x,), convention="mac").total() == counter.get_total_flops() / 2


def test_unknown_op_is_reported_with_its_module():
    model = nn.Sequential(nn.Linear(3, 3), Fn(lambda m, x: torch.special.bessel_j0(x)))
    flops = FlexcoreFlopCountAnalysis(model, (torch.randn(2, 3),))
    with pytest.raises(UncountedOpsError, match=r"aten::special_bessel_j0.*modules: 1"):
        assert_all_ops_counted(flops)


def test_unknown_convention_is_rejected():
    with pytest.raises(ValueError, match="convention"):
        FlexcoreFlopCountAnalysis(nn.Linear(2, 2), (torch.randn(1, 2),), convention="macs")


@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("convention", ["mac", "flop"])
def test_fft_channel_mix_is_an_exact_complex_bmm(groups, convention):
    """The FFT conv's channel mix (the ``_ComplexMix`` autograd op, traced as
    ``prim::PythonOp._ComplexMix``; depthwise: a complex product) costs 4 real MACs per complex
    MAC: ``4 * bins * B * C_out * C_in / groups`` (8 per complex MAC in the flop convention)."""
    from flexcore.layers.functional import _mix_channels

    b, c_in, c_out, freq = 2, 6, 6, (5, 3)
    bins = math.prod(freq)
    spectrum = lambda t: torch.fft.rfftn(t, dim=(-2, -1))  # noqa: E731
    x = torch.randn(b, c_in, freq[0], 2 * (freq[1] - 1))
    w = torch.randn(bins, c_out, c_in // groups, 2)
    flops = count(lambda m, x, w: torch.view_as_real(_mix_channels(spectrum(x), torch.view_as_complex(w), groups)),
                  x, w, convention=convention)
    per_complex_mac = 4 if convention == "mac" else 8
    mix = {k: v for k, v in flops.by_operator().items() if not k.startswith("fft")}
    if groups == c_in:  # depthwise: one complex product per (sample, channel, bin): 4 (mac) / 6 (flop)
        assert mix == {"mul": (4 if convention == "mac" else 6) * b * c_out * bins}
    else:
        assert mix == {"PythonOp._ComplexMix": per_complex_mac * bins * b * c_out * (c_in // groups)}

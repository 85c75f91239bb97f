import functools

import pytest
import torch
import torch.nn as nn

from flexcore.layers import CKConv, FlexConv, GaussianMask
from flexcore.layers.lowrank import hidden_features, supports_low_rank
from flexcore.registry import KERNEL_NETS

from layer_test_utils import TinyKernelNet

NETS = {
    "MAGNet": {}, "GaborNet": {}, "FourierNet": {}, "SIREN": {}, "nSIREN": {},
    "MLP": {"norm": "BatchNorm"}, "MLP-wn": {"norm": None, "weight_norm": True},
}


def _factory(name):
    return functools.partial(KERNEL_NETS.get(name.split("-")[0]), hidden_channels=6, num_layers=2, **NETS[name])


@pytest.mark.parametrize("name", NETS)
def test_builtin_nets_split_into_hidden_and_output_layer(name):
    torch.manual_seed(0)
    net = _factory(name)(2, 20)
    assert supports_low_rank(net)
    x = torch.rand(2, 30) * 2 - 1
    hidden = hidden_features(net, x)
    assert torch.allclose(net.output_linear(hidden), net.forward_features(x), atol=1e-6)
    assert type(net.output_linear).__name__ == "PointwiseLinear"  # restored


# (spatial size, causal): even and odd lengths, square and non-square, causal and not
SHAPES = [((12,), True), ((13,), True), ((13,), False), ((13, 9), False)]


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("spatial,causal", SHAPES)
def test_low_rank_fft_training_matches_spatial(name, spatial, causal):
    """Training forward + backward through the low-rank spectrum equals the spatial path."""
    dim = len(spatial)
    results = []
    for fft in (False, True):
        torch.manual_seed(0)
        layer = FlexConv(4, 5, dim, causal=causal, kernel_net=_factory(name), horizon=11,
                         mask=functools.partial(GaussianMask, init_value=0.3), fft=fft,
                         sampling_rate_norm=0.5).double()
        assert layer._low_rank_maps() == 7  # H + 1 < 5 * 4 kernel maps
        x = torch.randn(2, 4, *spatial, dtype=torch.float64)
        y = layer(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        results.append((y.detach(), layer.conv_kernel.detach(), {k: p.grad.clone() for k, p in layer.named_parameters()}))
    (y0, k0, g0), (y1, k1, g1) = results
    assert torch.allclose(y0, y1, rtol=1e-9, atol=1e-10)
    assert torch.allclose(k0, k1, rtol=1e-12, atol=1e-14)
    for key in g0:
        assert torch.allclose(g0[key], g1[key], rtol=1e-7, atol=1e-9), key


def test_third_party_net_opts_in_with_forward_hidden():
    class Opted(nn.Module):
        def __init__(self, dim, out_channels):
            super().__init__()
            self.first = nn.Linear(dim, 6)
            self.output_linear = nn.Linear(6, out_channels)

        def forward_hidden(self, x):  # (dim, N) -> (H, N)
            return torch.sin(self.first(x.t())).t()

        def forward(self, positions):
            dim, shape = positions.shape[1], positions.shape[2:]
            h = self.forward_hidden(positions.reshape(dim, -1))
            return self.output_linear(h.t()).t().reshape(1, -1, *shape)

    assert supports_low_rank(Opted(2, 4)) and not supports_low_rank(TinyKernelNet(2, 4))
    outs = []
    for fft in (False, True):
        torch.manual_seed(0)
        layer = CKConv(3, 4, 2, kernel_net=Opted, horizon=7, fft=fft)
        outs.append(layer(torch.randn(1, 3, 9, 9, generator=torch.Generator().manual_seed(1))))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_small_layers_skip_the_low_rank_path():
    layer = FlexConv(1, 2, 2, kernel_net=_factory("MAGNet"))  # 2 kernel maps < H + 1
    assert layer._low_rank_maps() is None

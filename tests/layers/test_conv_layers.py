import functools

import gin
import pytest
import torch
import torch.nn as nn

from flexcore.config import ConfigError, parse_config
from flexcore.layers import CKConv, Conv, ContinuousConv, FlexConv, SeparableFlexConv, SRFConv, continuous_convs
from flexcore.layers.masks import GaussianMask, HannMask, NoMask, SigmoidMask
from flexcore.registry import CONVS, KERNEL_NETS, UnknownNameError

from layer_test_utils import TinyKernelNet


def build(name, c_in, c_out, dim, causal=False, kernel_net=TinyKernelNet, **kw):
    cls = CONVS.get_raw(name)
    if issubclass(cls, ContinuousConv):
        kw.setdefault("horizon", 9)
        kw["kernel_net"] = kernel_net
    return CONVS.get(name)(c_in, c_out, dim, causal=causal, **kw)


def test_registry_has_the_convs():
    assert set(CONVS.list()) >= {"CKConv", "FlexConv", "SeparableFlexConv", "Conv", "SRFConv"}
    assert CONVS.get_raw("SRF") is SRFConv


GEOMETRIES = [(1, False), (1, True), (2, False), (3, False)]


@pytest.mark.parametrize(
    "name,dim,causal",
    [(n, d, c) for n in CONVS.list() for d, c in GEOMETRIES if not (c and n.startswith("SRF"))],  # SRF: centred
)
def test_every_conv_builds_runs_and_backprops(name, dim, causal):
    torch.manual_seed(0)
    layer = build(name, 3, 4, dim, causal)
    x = torch.randn(2, 3, *([8] * dim), requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 4, *([8] * dim))
    y.square().mean().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    grads = [p.grad for p in layer.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("net", ["MAGNet", "SIREN", "MLP", "GaborNet"])
@pytest.mark.parametrize("name", ["CKConv", "FlexConv", "SeparableFlexConv"])
@pytest.mark.parametrize("dim,causal", GEOMETRIES)
def test_continuous_convs_with_real_kernel_nets(name, net, dim, causal):
    torch.manual_seed(0)
    factory = functools.partial(KERNEL_NETS.get(net), hidden_channels=8, num_layers=2)
    kw = {} if name == "CKConv" else {"mask": functools.partial(GaussianMask, init_value=0.3)}  # > 1 point (BatchNorm)
    layer = CONVS.get(name)(2, 3, dim, causal=causal, kernel_net=factory, horizon=7, **kw)
    x = torch.randn(2, 2, *([6] * dim))
    y = layer(x)
    assert y.shape == (2, 3, *([6] * dim))
    y.square().mean().backward()
    assert torch.isfinite(y).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters() if p.requires_grad)


def test_default_kernel_net_is_magnet():
    layer = FlexConv(2, 3, 2)
    assert type(layer.kernel_net).__name__ == "MAGNet" and layer.kernel_net.out_channels == 6


@pytest.mark.parametrize("mask", [GaussianMask, SigmoidMask, HannMask, NoMask])
def test_flexconv_with_every_mask(mask):
    layer = FlexConv(2, 3, 2, kernel_net=TinyKernelNet, mask=mask, horizon=17)
    y = layer(torch.randn(1, 2, 12, 12))
    y.sum().backward()
    assert y.shape == (1, 3, 12, 12)


def test_causal_layers_are_causal():
    torch.manual_seed(0)
    for layer in (FlexConv(2, 2, 1, causal=True, kernel_net=TinyKernelNet, horizon="same"),
                  CKConv(2, 2, 1, causal=True, kernel_net=TinyKernelNet, fft=True),
                  Conv(2, 2, 1, causal=True, kernel_size=5)):
        x = torch.randn(1, 2, 30)
        y = layer(x)
        x2 = x.clone()
        x2[..., 20:] += 1.0
        # A leak moves outputs by O(1) (inputs changed by 1.0); the FFT path's rounding is ~2e-6.
        assert torch.allclose(layer(x2)[..., :20], y[..., :20], atol=1e-5)
        assert not torch.allclose(layer(x2)[..., 20:], y[..., 20:])


def test_horizon_and_grid_length():
    layer = CKConv(1, 1, 2, kernel_net=TinyKernelNet, horizon="full")
    layer(torch.randn(1, 1, 8, 6))
    assert layer.train_length.tolist() == [15, 11] and layer.kernel_size() == (15, 11)
    layer = CKConv(1, 1, 1, kernel_net=TinyKernelNet)  # 'same'
    with pytest.raises(RuntimeError, match="first forward"):
        layer.kernel_size()
    layer(torch.randn(1, 1, 20))
    assert layer.kernel_size() == (20,)
    layer(torch.randn(1, 1, 40))  # fixed on the first forward, like the original
    assert layer.kernel_size() == (20,)
    assert "train_length" in layer.state_dict()


def test_set_resolution():
    layer = CKConv(1, 1, 2, kernel_net=TinyKernelNet, horizon=17)
    x = torch.randn(1, 1, 16, 16)
    y17 = layer(x)
    layer.set_resolution(horizon=33, sampling_rate_norm=0.25)
    assert layer.kernel_size() == (33, 33) and layer.sampling_rate_norm == 0.25
    assert layer(x).shape == y17.shape
    layer.set_resolution(horizon="same")
    layer(torch.randn(1, 1, 9, 9))
    assert layer.kernel_size() == (9, 9)


def test_sampling_rate_norm_scales_the_kernel_and_refreshes_the_eval_cache():
    torch.manual_seed(0)
    layer = FlexConv(2, 3, 2, kernel_net=TinyKernelNet, horizon=9, mask=lambda d, causal: GaussianMask(d, init_value=0.3))
    x = torch.randn(1, 2, 8, 8)
    layer.eval()
    with torch.no_grad():
        y1, k1 = layer(x), layer.generate_kernel().clone()  # cached from here on
        layer.set_resolution(sampling_rate_norm=0.25)  # cross-resolution: (source / target)^2
        y2, k2 = layer(x), layer.generate_kernel()
    assert torch.allclose(k2, 0.25 * k1, rtol=1e-6, atol=0)  # mask * (norm * kernel net output)
    bias = layer.bias.view(1, -1, 1, 1)
    assert torch.allclose(y2 - bias, 0.25 * (y1 - bias), rtol=1e-5, atol=1e-6)


def test_stride_and_padding_are_honoured():
    torch.manual_seed(0)
    for fft in (False, True):
        layer = CKConv(2, 3, 2, kernel_net=TinyKernelNet, horizon=5, stride=2, padding="valid", fft=fft)
        y = layer(torch.randn(1, 2, 16, 15))
        assert y.shape == (1, 3, 6, 6)
    layer = CKConv(2, 3, 2, kernel_net=TinyKernelNet, horizon=5, stride=(2, 1), padding=1)
    assert layer(torch.randn(1, 2, 16, 15)).shape == (1, 3, 7, 13)


def test_conv_init_matches_torch():
    for dim, cls in [(1, nn.Conv1d), (2, nn.Conv2d), (3, nn.Conv3d)]:
        torch.manual_seed(5)
        ours = Conv(3, 4, dim, kernel_size=3)
        torch.manual_seed(5)
        ref = cls(3, 4, 3, padding="same")
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
        x = torch.randn(2, 3, *([7] * dim))
        assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_separable_flexconv_structure():
    layer = SeparableFlexConv(4, 6, 2, kernel_net=TinyKernelNet, horizon=9)
    assert layer.kernel_net.out.out_channels == 4  # one kernel per input channel
    assert layer.generate_kernel().shape[:2] == (4, 1)
    assert layer(torch.randn(2, 4, 10, 10)).shape == (2, 6, 10, 10)
    assert set(dict(layer.named_parameters())) >= {"bias", "pointwise.weight", "mask.mean", "mask.sigma"}


def test_cropping_error_is_bounded_by_the_masked_out_mass():
    torch.manual_seed(0)
    layer = FlexConv(3, 4, 2, kernel_net=TinyKernelNet, horizon=33, mask=lambda d, causal: GaussianMask(d, init_value=0.15))
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        cropped = layer(x)
        ksize = layer.kernel_size()
        layer.dynamic_cropping = False
        full = layer(x)
        full_kernel = layer.generate_kernel()
    assert ksize == (11, 11) and full_kernel.shape[2:] == (33, 33)
    outside = full_kernel.abs().clone()
    outside[..., 11:22, 11:22] = 0
    bound = outside.sum(dim=(1, 2, 3)) * x.abs().max()  # per output channel
    diff = (cropped - full).abs().amax(dim=(0, 2, 3))
    assert torch.all(diff <= bound + 1e-6)
    assert diff.max() > 0  # cropping did drop something


def test_continuous_convs_iterates_named_modules():
    model = nn.Sequential(FlexConv(1, 2, 2, kernel_net=TinyKernelNet, horizon=5), nn.ReLU(),
                          nn.Sequential(CKConv(2, 2, 2, kernel_net=TinyKernelNet, horizon=5)), Conv(2, 2, 2))
    assert [(n, type(m).__name__) for n, m in continuous_convs(model)] == [("0", "FlexConv"), ("2.0", "CKConv")]


# -- bad input ---------------------------------------------------------------------------
def test_wrong_rank_or_channels_names_the_layer():
    layer = FlexConv(3, 4, 2, kernel_net=TinyKernelNet, horizon=5)
    with pytest.raises(ValueError, match=r"FlexConv\(in_channels=3, dim=2\).*\(B, 3, H, W\).*\(2, 4, 8, 8\)"):
        layer(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"FlexConv\(in_channels=3, dim=2\)"):
        layer(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"Conv\(in_channels=2, dim=1\)"):
        Conv(2, 2, 1)(torch.randn(1, 3, 5))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(horizon=32), "FlexConv: horizon must be odd.*use 33"),
        (dict(horizon="big"), "FlexConv: horizon must be 'same', 'full' or an odd"),
        (dict(horizon=-3), "FlexConv: horizon must be odd"),
        (dict(in_channels=0), "FlexConv: in_channels must be a positive int"),
        (dict(out_channels=-1), "FlexConv: out_channels must be a positive int"),
        (dict(stride=0), "FlexConv: stride must be a positive int"),
        (dict(fft="yes"), "FlexConv: fft must be True, False or 'auto'"),
        (dict(padding="full"), "FlexConv: padding must be"),
        (dict(dim=4), "FlexConv: dim must be 1, 2 or 3"),
        (dict(dim=2, causal=True), "FlexConv: causal=True needs dim=1"),
    ],
)
def test_bad_arguments_name_layer_and_argument(kwargs, match):
    args = dict(in_channels=3, out_channels=4, dim=2, kernel_net=TinyKernelNet)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FlexConv(**args)


def test_bad_conv_and_srf_arguments():
    with pytest.raises(ValueError, match="Conv: kernel_size must be a positive int"):
        Conv(1, 1, 2, kernel_size=0)
    with pytest.raises(ValueError, match="SRFConv: .*causal"):
        SRFConv(1, 1, 1, causal=True)


def test_unknown_kernel_net_name_names_layer_and_argument():
    with pytest.raises(UnknownNameError, match=r"FlexConv\.kernel_net: No object named 'MAGNt'"):
        FlexConv(1, 1, 2, kernel_net="MAGNt")
    with pytest.raises(UnknownNameError, match=r"FlexConv\.mask: No object named 'Gausian'"):
        FlexConv(1, 1, 2, kernel_net=TinyKernelNet, mask="Gausian")


def test_unknown_kernel_net_in_gin():
    gin.parse_config("FlexConv.kernel_net = 'NoSuchNet'")
    with pytest.raises(UnknownNameError, match=r"FlexConv\.kernel_net: No object named 'NoSuchNet'"):
        CONVS.get("FlexConv")(1, 1, 2)
    gin.clear_config()
    with pytest.raises(ConfigError, match="NoSuchNet"):
        parse_config(bindings=["FlexConv.kernel_net = @NoSuchNet"], finalize=False)


def test_kernel_net_with_wrong_output_shape():
    class Wrong(nn.Module):
        def __init__(self, dim, out_channels):
            super().__init__()
            self.lin = nn.Conv2d(dim, out_channels + 1, 1)

        def forward(self, p):
            return self.lin(p)

    with pytest.raises(RuntimeError, match=r"CKConv.kernel_net \(Wrong\) returned shape \(1, 7, 5, 5\).*expected \(1, 6, 5, 5\)"):
        CKConv(2, 3, 2, kernel_net=Wrong, horizon=5)(torch.randn(1, 2, 8, 8))


def test_grid_length_for_the_regulariser():
    layer = FlexConv(1, 1, 2, kernel_net=TinyKernelNet)
    assert layer.grid_length == 0
    layer(torch.randn(1, 1, 12, 16))
    assert layer.grid_length == 12
    assert FlexConv(1, 1, 2, kernel_net=TinyKernelNet, horizon=33).grid_length == 33

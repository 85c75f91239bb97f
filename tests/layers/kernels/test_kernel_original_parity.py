"""Kernel nets against the original FlexConv code's outputs (tests/fixtures/seed).

(1) original weights, converted, give the original kernel-net output on the fixture's grid;
(2) seeding as the original and constructing reproduces its initial parameters bit for bit.
"""
import pytest
import torch
import torch.nn as nn

from flexcore.compat.original.weights import (
    ckconv_kwargs_from_config,
    convert_kernel_net,
    kernel_net_config,
    load_original_kernel_net,
)
from flexcore.registry import KERNEL_NETS
from flexcore.utils.testing import SEED_LAYER_CASES, load_seed_case


def _build(ckconv_kwargs, in_channels, out_channels):
    name, hp = kernel_net_config(ckconv_kwargs)
    return KERNEL_NETS.build(name, ckconv_kwargs["kernel_dim_linear"], in_channels * out_channels, **hp)


def _assert_close(actual, expected):
    assert actual.shape == expected.shape
    err = (actual - expected).abs().max().item()
    assert err <= 1e-5 * expected.abs().max().item(), f"max|diff| {err:.3g}"


@pytest.mark.parametrize("case", SEED_LAYER_CASES)
def test_original_weights_give_original_kernel(seed_fixtures, case):
    meta, data = load_seed_case(seed_fixtures, case)
    kw = meta["constructor_kwargs"]
    net = _build(kw, kw["in_channels"], kw["out_channels"])
    load_original_kernel_net(net, data["state_dict"], "Kernel.")
    net.eval()  # the fixtures are eval mode (matters for MLP + BatchNorm)
    with torch.no_grad():
        out = net(data["rel_positions"])
    _assert_close(out, data["kernel_net_output"])


@pytest.mark.parametrize("case", SEED_LAYER_CASES)
def test_seeded_construction_reproduces_original_init(seed_fixtures, case):
    meta, data = load_seed_case(seed_fixtures, case)
    kw = meta["constructor_kwargs"]
    if "effective_kernel_init_spatial_value" in meta:  # FlexConv's 1.667 * mask init override
        assert kernel_net_config(kw)[1]["init_spatial_value"] == meta["effective_kernel_init_spatial_value"]
    torch.manual_seed(meta["torch_seed"])
    net = _build(kw, kw["in_channels"], kw["out_channels"])
    expected = convert_kernel_net(data["state_dict"], "Kernel.", kw["kernel_type"])
    ours = net.state_dict()
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("case", ["flexconv2d_magnet", "flexconv1d_causal_fft"])
def test_flexconv_spatial_init_hook_is_bit_exact(seed_fixtures, case):
    """FlexConv builds MAGNet with its default spread, then calls set_spatial_init(1.667·σ₀)."""
    meta, data = load_seed_case(seed_fixtures, case)
    kw = meta["constructor_kwargs"]
    torch.manual_seed(meta["torch_seed"])
    net = KERNEL_NETS.build(
        "MAGNet", kw["kernel_dim_linear"], kw["in_channels"] * kw["out_channels"], input_scale=kw["kernel_input_scale"]
    )
    net.set_spatial_init(1.667 * kw["mask_init_value"])
    expected = convert_kernel_net(data["state_dict"], "Kernel.", "MAGNet")
    for key, value in expected.items():
        assert torch.equal(net.state_dict()[key], value), key


def _replay_model_kernel_nets(meta, data, shortcut_conv):
    """Rebuild every conv's kernel net in the original model's RNG order.

    Inside a CKConv/FlexConv only the kernel net draws random numbers; between blocks the
    1x1 shortcut convs (where the width changes) draw their default init.
    """
    kwargs = ckconv_kwargs_from_config(meta["config"])
    sd = data["state_dict"]
    torch.manual_seed(meta["torch_seed"])
    nets = {}
    for name, layer in meta["conv_layers"].items():
        out_ch, in_ch = layer["kernel_shape"][:2]
        nets[name] = _build(kwargs, in_ch, out_ch)
        block = name.rsplit(".", 1)[0]
        if name.endswith("cconv2") and f"{block}.shortcut.0.weight" in sd:
            cout, cin = sd[f"{block}.shortcut.0.weight"].shape[:2]
            shortcut_conv(cin, cout)
    return kwargs, nets


@pytest.mark.parametrize(
    "case, shortcut",
    [
        ("flexnet7_cifar10", lambda cin, cout: nn.Conv2d(cin, cout, 1)),
        ("flextcn_scifar10", lambda cin, cout: nn.Conv1d(cin, cout, 1)),
    ],
)
def test_model_kernel_nets_init_bit_exact(seed_fixtures, case, shortcut):
    meta, data = load_seed_case(seed_fixtures, case)
    kwargs, nets = _replay_model_kernel_nets(meta, data, shortcut)
    for name, net in nets.items():
        expected = convert_kernel_net(data["state_dict"], f"{name}.Kernel.", kwargs["kernel_type"])
        ours = net.state_dict()
        assert set(ours) == set(expected), name
        for key, value in expected.items():
            assert torch.equal(ours[key], value), f"{name}.{key}"


def _gaussian_mask(coords, mean, sigma):
    return torch.exp(-0.5 * ((1.0 / sigma) * (coords - mean)) ** 2)


@pytest.mark.parametrize("case", ["flexnet7_cifar10", "flextcn_scifar10"])
def test_model_kernel_nets_reproduce_kernel_slices(seed_fixtures, case):
    """Converted kernel nets × the Gaussian mask give the model's cropped kernels[:2, :2]."""
    meta, data = load_seed_case(seed_fixtures, case)
    kwargs = ckconv_kwargs_from_config(meta["config"])
    sd = data["state_dict"]
    for name, layer in meta["conv_layers"].items():
        out_ch, in_ch, *size = layer["kernel_shape"]
        net = _build(kwargs, in_ch, out_ch).eval()
        load_original_kernel_net(net, sd, f"{name}.Kernel.", kwargs["kernel_type"])
        params = sd[f"{name}.mask_params"]
        if len(size) == 2:  # centred 5x5 crop of the 33-point grid
            n = int(kwargs["conv_horizon"])
            coords = torch.linspace(-1, 1, n)
            k = (n - size[0]) // 2
            axis = coords[k : n - k]
            grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij")).unsqueeze(0)
            mask = _gaussian_mask(grid[0, 0], params[0, 0], params[0, 1]) * _gaussian_mask(
                grid[0, 1], params[1, 0], params[1, 1]
            )
        else:  # causal 1D: the last `size` points of the input-length grid
            coords = torch.linspace(-1, 1, meta["input_shape"][-1])
            grid = coords[-size[0] :].view(1, 1, -1)
            mask = _gaussian_mask(grid[0, 0], params[0, 0], params[0, 1])
        with torch.no_grad():
            kernel = net(grid).view(out_ch, in_ch, *size) * mask
        _assert_close(kernel[:2, :2], data["kernel_slices"][name])

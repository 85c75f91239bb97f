"""Defaults of the conv layers: plain Python is the paper's FlexConv; gin applies only through gin.

The rule (docs/layers.md, "Defaults"): a layer constructed in Python never reads gin; a layer
built through gin (``@FlexConv``) or the registry resolves its default kernel net and mask
through the registry too, so their gin bindings apply whether or not ``FlexConv.kernel_net``
/ ``FlexConv.mask`` are bound.
"""
import gin
import pytest
import torch

from flexcore.compat.original.weights import convert_conv
from flexcore.config import parse_config
from flexcore.layers import CKConv, FlexConv, GaussianMask
from flexcore.layers.kernels import MAGNet
from flexcore.registry import CONVS
from flexcore.utils.testing import load_seed_case

# Gin files parsed before building a plain layer: none, the paper's FlexConv block, and a
# quick config binding other MAGNet/GaussianMask values (hidden 16, init 0.25).
GIN_STATES = [None, "base/models/flexconv.gin", "quick/digits_flexnet.gin"]


def _parse(gin_file):
    if gin_file is not None:
        parse_config([gin_file], finalize=False)


def _assert_paper_flexconv(layer):
    net, mask = layer.kernel_net, layer.mask
    assert type(net) is MAGNet and type(mask) is GaussianMask
    assert (net.hidden_channels, net.num_layers, net.input_scale) == (32, 3, 25.6)
    assert not net.steerable and net.bias_init is None
    assert net.init_spatial_value == pytest.approx(1.667 * 0.075)  # centres inside the mask
    assert mask.init_value == 0.075 and mask.threshold.item() == pytest.approx(0.1)
    assert mask.temperature.item() == 15.0
    assert layer.dynamic_cropping and layer.bias is not None and not layer.bias.any()


@pytest.mark.parametrize("gin_file", GIN_STATES)
def test_plain_flexconv_is_the_papers_with_any_gin_state(gin_file):
    _parse(gin_file)
    _assert_paper_flexconv(FlexConv(3, 64, dim=2, horizon=33))
    # A name in Python is the plain class too.
    layer = FlexConv(3, 64, dim=2, horizon=33, kernel_net="MAGNet", mask="GaussianMask")
    _assert_paper_flexconv(layer)
    assert CKConv(3, 8, dim=2).kernel_net.input_scale == 25.6


@pytest.mark.parametrize("gin_file", GIN_STATES)
def test_plain_flexconv_reproduces_the_originals_initial_state(seed_fixtures, gin_file):
    """Seeded like the original, the defaults give its state dict bit for bit (no kwargs)."""
    meta, data = load_seed_case(seed_fixtures, "flexconv2d_magnet")
    _parse(gin_file)
    torch.manual_seed(meta["torch_seed"])
    layer = FlexConv(3, 8, 2, horizon=33)
    expected = convert_conv(data["state_dict"], "", "MAGNet", 2)
    ours = layer.state_dict()
    assert set(ours) == set(expected)
    for key in sorted(set(ours) - {"train_length"}):
        assert torch.equal(ours[key], expected[key]), key
    layer.eval()
    with torch.no_grad():
        out = layer(data["input"])
    assert (out - data["output"]).abs().max() <= 1e-5 * data["output"].abs().max()


@pytest.mark.parametrize("gin_file", [None, "base/models/flexconv.gin"])
def test_gin_built_flexconv_applies_default_mask_and_kernel_bindings(gin_file):
    _parse(gin_file)
    gin.parse_config(
        [
            "GaussianMask.init_value = 0.3",  # FlexConv.mask unbound when gin_file is None
            "MAGNet.hidden_channels = 8",
            "defaults_test_build.conv = @FlexConv",
            "HORIZON = 17",  # the model block leaves it to the dataset's file
        ]
    )
    if gin_file is None:
        with pytest.raises(ValueError):
            gin.query_parameter("FlexConv.mask")  # really unbound: the default path is tested
    layer = defaults_test_build()
    assert type(layer.mask) is GaussianMask and layer.mask.init_value == 0.3
    assert layer.kernel_net.hidden_channels == 8
    assert layer.kernel_net.init_spatial_value == pytest.approx(1.667 * 0.3)
    # The registry is the same path as gin.
    assert CONVS.build("FlexConv", 3, 4, 2).mask.init_value == 0.3
    # ... while the class called directly stays the paper's.
    _assert_paper_flexconv(FlexConv(3, 64, dim=2, horizon=33))


@gin.configurable
def defaults_test_build(conv):
    return conv(3, 4, 2, horizon=17)

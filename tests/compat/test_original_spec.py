"""Architecture inference for original checkpoints (flexcore.compat.original.spec)."""
import functools

import pytest
import torch
import torchvision

from flexcore.compat.original.weights import OriginalCheckpointError, convert_original_model
from flexcore.compat.original.spec import _width_factors, spec_from_config, spec_from_state_dict
from flexcore.modeling.backbones import CIFARResNet, FlexNet
from flexcore.registry import CONVS


def test_width_factor_pairs_reproduce_widths():
    assert _width_factors([22, 33, 33, 44, 44], 22) == [1.0, 1, 1.5, 2, 2.0, 2]
    assert _width_factors([24, 24, 36, 36, 36, 48, 48], 24) == [1.0, 2, 1.5, 3, 2.0, 2]
    for widths, base in (([7, 10, 10, 13], 7), ([3, 5, 7], 3)):
        pairs = _width_factors(widths, base)
        expanded = [f for f, n in zip(pairs[0::2], pairs[1::2]) for _ in range(n)]
        assert [int(base * f) for f in expanded] == widths


def test_cifar_resnet_round_trip():
    sd = CIFARResNet(3, 10, 2, depth=44).state_dict()
    spec = spec_from_state_dict(sd)
    assert (spec.backbone, spec.backbone_hp, spec.in_channels, spec.out_channels) == (
        "CIFARResNet", {"depth": 44, "base_width": 16}, 3, 10)
    model = spec.build()
    model.load_state_dict(convert_original_model(sd, spec.kernel_type, spec.dim))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_torchvision_arch_detection(arch):
    sd = getattr(torchvision.models, arch)(num_classes=7).state_dict()
    spec = spec_from_state_dict(sd)
    assert spec.backbone == "TorchvisionResNet" and spec.backbone_hp == {"arch": arch}
    assert spec.out_channels == 7


def test_discrete_conv_flexnet_and_layernorm():
    conv = functools.partial(CONVS.get_raw("Conv"), kernel_size=5)
    model = FlexNet(1, 4, 2, conv=conv, hidden_channels=6, num_blocks=3,
                    block_width_factors=[1.0, 1, 1.5, 2], norm="LayerNorm", nonlinearity="LeakyReLU")
    spec = spec_from_state_dict(model.state_dict(), nonlinearity="LeakyReLU", dropout=0.0)
    assert (spec.conv, spec.conv_hp) == ("Conv", {"kernel_size": 5, "bias": True})
    assert spec.backbone_hp["norm"] == "LayerNorm" and spec.backbone_hp["block_width_factors"] == [1.0, 1, 1.5, 2]
    rebuilt = spec.build()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 9, 9)
    assert torch.allclose(rebuilt.eval()(x), model.eval()(x))
    assert "FlexNet.nonlinearity = 'LeakyReLU'" in spec.gin()


def test_config_baselines_and_errors():
    base = {"kernel": {"dim_linear": 2}, "conv": {"type": "Conv"}}
    spec = spec_from_config({**base, "net": {"type": "CIFARResNet32"}}, 3, 100)
    assert (spec.backbone, spec.backbone_hp) == ("CIFARResNet", {"depth": 32})
    spec = spec_from_config({**base, "net": {"type": "OriginalResnet18"}}, 3, 10)
    assert spec.backbone_hp == {"arch": "resnet18"}
    with pytest.raises(OriginalCheckpointError, match="Unknown original net.type"):
        spec_from_config({**base, "net": {"type": "UNet"}}, 3, 10)
    net = {"type": "ResNet", "no_hidden": 8, "no_blocks": 1, "block_width_factors": [0.0], "norm": "BatchNorm",
           "nonlinearity": "ReLU", "dropout": 0.0}
    with pytest.raises(OriginalCheckpointError, match="SRF"):
        spec_from_config({"net": net, "kernel": {"dim_linear": 2}, "conv": {"type": "SRF"}}, 3, 10)


def test_unknown_layouts_and_hints():
    with pytest.raises(OriginalCheckpointError, match="Not a state dict of an original FlexConv model"):
        spec_from_state_dict({"encoder.weight": torch.zeros(2)})
    with pytest.raises(TypeError, match="Unknown hints"):
        spec_from_state_dict({}, horizn=33)

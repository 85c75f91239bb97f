import pytest
import torch
import torch.nn as nn
import torchvision

from flexcore.modeling.backbones import TorchvisionResNet
from flexcore.modeling.backbones.torchvision_resnet import StridedConv
from flexcore.utils.parameters import count_parameters

from backbone_test_utils import plain_conv  # noqa: F401  (fixture)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_matches_torchvision_exactly(arch):
    torch.manual_seed(0)
    ours = TorchvisionResNet(3, 10, 2, arch=arch)
    torch.manual_seed(0)
    ref = getattr(torchvision.models, arch)(num_classes=10)
    ref_sd = ref.state_dict()
    assert list(ours.state_dict()) == list(ref_sd)
    assert all(torch.equal(v, ref_sd[k]) for k, v in ours.state_dict().items())
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(ours.eval()(x), ref.eval()(x))


def test_resnet10_and_small_input():
    model = TorchvisionResNet(1, 10, 2, arch="resnet10", small_input=True)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert isinstance(model.maxpool, nn.Identity) and model.conv1.kernel_size == (3, 3)
    out = model(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 10)
    assert count_parameters(model) == count_parameters(torchvision.models.resnet18(num_classes=10)) - (
        # resnet18 - resnet10: one BasicBlock per stage without downsample
        sum(2 * (c * c * 9 + 2 * c) for c in (64, 128, 256, 512))
    ) - (64 * 3 * 49 - 64 * 1 * 9)


def test_conv_factory_replaces_3x3(plain_conv):
    model = TorchvisionResNet(3, 10, 2, conv=plain_conv, arch="resnet18", small_input=True)
    assert isinstance(model.layer2[0].conv1, StridedConv) and model.layer2[0].conv1.stride == 2
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_errors():
    with pytest.raises(ValueError, match="dim in"):
        TorchvisionResNet(3, 10, 1)
    with pytest.raises(ValueError, match="unknown arch"):
        TorchvisionResNet(3, 10, 2, arch="resnet9")

import gin
import torch

from flexcore.data.base import DatasetMetadata
from flexcore.modeling import build_model
from flexcore.modeling.backbones import CIFARResNet
from flexcore.utils.parameters import count_parameters


def test_build_model_from_gin_and_metadata():
    gin.parse_config("build_model.backbone = @CIFARResNet44")
    meta = DatasetMetadata(name="cifar10", in_channels=3, num_classes=10, shape=(32, 32))
    model = build_model(meta)
    assert isinstance(model, CIFARResNet) and model.depth == 44
    assert count_parameters(model) == 658_586
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_same_gin_builds_for_another_dataset():
    gin.parse_config("build_model.backbone = @CIFARResNet20\nCIFARResNet20.base_width = 8")
    meta = DatasetMetadata(name="smnist", in_channels=1, num_classes=10, shape=(784,))
    model = build_model(meta)
    assert model.dim == 1 and model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 784)).shape == (2, 10)

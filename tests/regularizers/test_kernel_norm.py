import os

import pytest
import torch

from flexcore.registry import REGULARIZERS, load_plugin
from flexcore.regularizers import LnLoss
from flexcore.layers.traversal import continuous_convs

TINY_PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine", "tiny_plugin.py")


@pytest.fixture(scope="module")
def tiny():
    return load_plugin(TINY_PLUGIN)


def test_value_is_the_unsquared_norm_sum_of_the_forward_kernels(tiny):
    torch.manual_seed(0)
    model = tiny.TinyNet(1, 4, 2)
    with torch.no_grad():
        for _, conv in continuous_convs(model):
            conv.bias.normal_()
    model(torch.randn(2, 1, 8, 8))
    convs = list(continuous_convs(model))
    assert len(convs) == 2
    expected = sum(conv.conv_kernel.flatten().pow(2).sum().sqrt() + conv.bias.pow(2).sum().sqrt() for _, conv in convs)
    value = LnLoss(weight=0.01)(model)
    assert value.item() == pytest.approx(0.01 * expected.item(), rel=1e-6)
    # p = 1
    expected_l1 = sum(conv.conv_kernel.abs().sum() + conv.bias.abs().sum() for _, conv in convs)
    assert LnLoss(weight=1.0, p=1.0)(model).item() == pytest.approx(expected_l1.item(), rel=1e-6)


def test_gradient_reaches_kernel_net_and_mask(tiny):
    model = tiny.TinyNet(1, 4, 2)
    model(torch.randn(2, 1, 8, 8))
    LnLoss(weight=1.0)(model).backward()
    conv = next(continuous_convs(model))[1]
    mask_grads = [p.grad for p in conv.mask.parameters() if p.requires_grad]
    net_grads = [p.grad for p in conv.kernel_net.parameters()]
    assert mask_grads and all(g is not None and torch.isfinite(g).all() for g in mask_grads + net_grads)
    assert any(g.abs().sum() > 0 for g in net_grads)
    assert model.head.weight.grad is None  # only continuous convs are penalised


def test_zero_weight_and_registry():
    assert REGULARIZERS.get_raw("LnLoss") is LnLoss
    model = torch.nn.Linear(2, 2)
    assert LnLoss()(model).item() == 0.0

"""PointwiseLinear (1x1-conv-equivalent linear map), weight norm and argument helpers."""
import logging
import pickle

import pytest
import torch
import torch.nn as nn

from flexcore.layers.kernels.base import PointwiseLinear, clamp_spatial_value, parse_bias_init


@pytest.mark.parametrize("reference", [lambda i, o: nn.Conv2d(i, o, 1), lambda i, o: nn.Conv1d(i, o, 1), nn.Linear])
def test_default_init_draws_equal_pytorch_conv1x1_and_linear(reference):
    torch.manual_seed(3)
    ref = reference(5, 7)
    after_ref = torch.rand(1)
    torch.manual_seed(3)
    ours = PointwiseLinear(5, 7)
    assert torch.equal(ours.weight, ref.weight.detach().reshape(7, 5))
    assert torch.equal(ours.bias, ref.bias.detach())
    assert torch.equal(torch.rand(1), after_ref)  # same number of draws consumed


def test_forward_equals_conv1x1():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    lin = PointwiseLinear(3, 4)
    lin.load_state_dict({"weight": conv.weight.detach().view(4, 3), "bias": conv.bias.detach()})
    x = torch.randn(1, 3, 6, 5)
    torch.testing.assert_close(lin(x.view(3, -1)).view(1, 4, 6, 5), conv(x))


def test_no_bias_draws_only_weight():
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 4, 1, bias=False)
    torch.manual_seed(0)
    lin = PointwiseLinear(3, 4, bias=False)
    assert lin.bias is None and "bias" not in lin.state_dict()
    assert torch.equal(lin.weight, ref.weight.detach().view(4, 3))
    x = torch.randn(3, 10)
    torch.testing.assert_close(lin(x), ref.weight.detach().view(4, 3) @ x)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
def test_weight_norm_matches_torch_weight_norm():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    lin = PointwiseLinear(3, 4)
    lin.load_state_dict({"weight": conv.weight.detach().view(4, 3), "bias": conv.bias.detach()})
    lin.apply_weight_norm()
    wn_conv = torch.nn.utils.weight_norm(conv)
    assert set(lin.state_dict()) == {"weight_g", "weight_v", "bias"}
    assert torch.equal(lin.weight_g, wn_conv.weight_g.detach().view(4, 1))
    assert torch.equal(lin.weight_v, wn_conv.weight_v.detach().view(4, 3))
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(lin(x.view(3, -1)).view(1, 4, 5, 5), wn_conv(x))
    # `.weight` is computed from (g, v) on access, so it follows updates of g
    with torch.no_grad():
        lin.weight_g.mul_(2)
    torch.testing.assert_close(lin.weight.norm(dim=1, keepdim=True), lin.weight_g.detach())
    lin(x.view(3, -1)).sum().backward()
    assert lin.weight_g.grad is not None and lin.weight_v.grad is not None
    clone = pickle.loads(pickle.dumps(lin))
    assert torch.equal(clone.weight, lin.weight) and clone.weight_normed


@pytest.mark.parametrize("value, expected", [(None, None), ("None", None), ("none", None), ("", None),
                                             ("zero", "zero"), ("Zero", "zero"), ("uniform", "uniform")])
def test_parse_bias_init(value, expected):
    assert parse_bias_init("Net", value) == expected


def test_parse_bias_init_rejects_unknown():
    with pytest.raises(ValueError, match="Net: unknown `bias_init` 'normal'"):
        parse_bias_init("Net", "normal")


def test_clamp_spatial_value(caplog):
    # flexcore's logger may not propagate to the root (setup_logger), so listen on it directly
    logger = logging.getLogger("flexcore.layers.kernels.base")
    logger.addHandler(caplog.handler)
    try:
        assert clamp_spatial_value("Net", 3.0) == 1.0
    finally:
        logger.removeHandler(caplog.handler)
    assert "Net: init_spatial_value 3.0 > 1 clamped to 1.0" in caplog.text
    assert clamp_spatial_value("Net", 0.125025) == 0.125025
    with pytest.raises(ValueError, match="init_spatial_value"):
        clamp_spatial_value("Net", -0.5)

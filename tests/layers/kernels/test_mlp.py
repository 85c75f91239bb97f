"""MLP kernel net: init (default draws, zero biases), norms, activations, weight norm."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.layers.kernels import MLP


def _grid2d(side=5):
    axis = torch.linspace(-1, 1, side)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij")).unsqueeze(0)


def test_init_is_default_draws_then_zero_biases():
    torch.manual_seed(0)
    net = MLP(2, 16, hidden_channels=32, num_layers=4, norm=None)
    torch.manual_seed(0)
    refs = [nn.Conv2d(2, 32, 1), nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 1), nn.Conv2d(32, 16, 1)]
    for ours, ref in zip([*net.hidden, net.output_linear], refs):
        assert torch.equal(ours.weight, ref.weight.detach().flatten(1))
        assert torch.equal(ours.bias, torch.zeros_like(ours.bias))
        bound = 1 / math.sqrt(ours.in_features)
        assert ours.weight.abs().max() <= bound


def test_forward_matches_explicit_formula():
    torch.manual_seed(0)
    net = MLP(2, 3, hidden_channels=8, num_layers=3, activation="LeakyReLU", norm="LayerNorm").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    grid = _grid2d()
    h = grid
    for layer, norm in zip(net.hidden, net.norms):
        h = F.conv2d(h, layer.weight[:, :, None, None], layer.bias)
        h = F.leaky_relu(F.group_norm(h, 1, norm.weight, norm.bias, eps=1e-12))
    expected = F.conv2d(h, net.output_linear.weight[:, :, None, None], net.output_linear.bias)
    torch.testing.assert_close(net(grid), expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_normalises_over_positions_in_train_and_uses_running_stats_in_eval():
    torch.manual_seed(0)
    net = MLP(2, 3, hidden_channels=8, num_layers=2, norm="BatchNorm")
    grid = _grid2d(7)
    reference = nn.BatchNorm2d(8)
    h = F.conv2d(grid, net.hidden[0].weight[:, :, None, None], net.hidden[0].bias)
    train_out = net(grid)
    expected = F.conv2d(F.relu(reference(h)), net.output_linear.weight[:, :, None, None], net.output_linear.bias)
    torch.testing.assert_close(train_out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.norms[0].running_mean, reference.running_mean)
    torch.testing.assert_close(net.norms[0].running_var, reference.running_var)
    net.eval()
    reference.eval()
    expected_eval = F.conv2d(F.relu(reference(h)), net.output_linear.weight[:, :, None, None], net.output_linear.bias)
    torch.testing.assert_close(net(grid), expected_eval, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(net(grid), train_out)  # the kernel depends on the mode


@pytest.mark.parametrize("activation, fn", [("ReLU", F.relu), ("LeakyReLU", F.leaky_relu),
                                            ("Swish", lambda x: x * torch.sigmoid(x)), ("swish", F.silu)])
def test_activations(activation, fn):
    torch.manual_seed(0)
    net = MLP(1, 2, hidden_channels=4, num_layers=2, activation=activation, norm=None)
    with torch.no_grad():
        net.hidden[0].bias.normal_()
    x = torch.linspace(-1, 1, 11).view(1, 1, -1)
    h = fn(net.hidden[0](x.view(1, -1)))
    torch.testing.assert_close(net(x).view(2, -1), net.output_linear(h))


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
def test_weight_norm_keeps_init_and_uses_original_names():
    torch.manual_seed(0)
    plain = MLP(2, 4, norm=None)
    torch.manual_seed(0)
    normed = MLP(2, 4, norm=None, weight_norm=True)
    keys = set(normed.state_dict())
    assert "hidden.0.weight_g" in keys and "output_linear.weight_v" in keys
    assert not any(k.endswith(".weight") for k in keys)
    torch.testing.assert_close(normed(_grid2d()), plain(_grid2d()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "GELU"}, "unknown `activation` 'GELU'.*LeakyReLU"),
        ({"activation": ""}, "unknown `activation`"),  # the original's config default
        ({"norm": "InstanceNorm"}, "unknown `norm` 'InstanceNorm'.*BatchNorm"),
        ({"num_layers": 1}, "`num_layers` must be an integer >= 2"),
    ],
)
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(2, 4, **kwargs)


@pytest.mark.parametrize("norm", ["", "none", None, "Identity"])
def test_no_norm_spellings(norm):
    assert len(MLP(2, 4, norm=norm).norms) == 0


def test_no_bias():
    net = MLP(2, 4, bias=False, norm=None)
    assert not any("bias" in k for k in net.state_dict())
    assert net(_grid2d()).shape == (1, 4, 5, 5)

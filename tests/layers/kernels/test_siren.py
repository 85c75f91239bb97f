"""SIREN / nSIREN: init order and ranges, omega_0 handling, formulas, frequency terms."""
import math

import pytest
import torch
import torch.nn as nn

from flexcore.layers.kernels import SIREN, nSIREN


def _grid1d(n=17):
    return torch.linspace(-1, 1, n).view(1, 1, n)


@pytest.mark.parametrize("bias_init", [None, "zero", "uniform"])
def test_init_replays_the_original_rng_order(bias_init):
    """Default draws for all layers first, then weight (+ bias) re-draws in layer order."""
    omega_0, dim, hidden, out = 30.0, 2, 16, 5
    torch.manual_seed(0)
    net = SIREN(dim, out, hidden_channels=hidden, num_layers=3, omega_0=omega_0, bias_init=bias_init)
    torch.manual_seed(0)
    convs = [nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 1), nn.Conv2d(hidden, out, 1)]
    for k, conv in enumerate(convs):
        fan_in = conv.weight.shape[1]
        bound = 1 / fan_in if k == 0 else math.sqrt(6.0 / fan_in) / omega_0
        conv.weight.data.uniform_(-bound, bound)
        if bias_init == "zero":
            conv.bias.data.fill_(0)
        elif bias_init == "uniform":
            conv.bias.data.uniform_(-1.0, 1.0)
    for ours, conv in zip([*net.hidden, net.output_linear], convs):
        assert torch.equal(ours.weight, conv.weight.detach().flatten(1))
        assert torch.equal(ours.bias, conv.bias.detach())


def test_init_ranges_follow_the_formulas():
    torch.manual_seed(0)
    net = SIREN(2, 64, hidden_channels=256, num_layers=4, omega_0=10.0)
    first, *rest = [*net.hidden, net.output_linear]
    assert first.weight.abs().max() <= 1 / 2 and first.weight.abs().max() > 0.45
    for layer in rest:
        bound = math.sqrt(6.0 / 256) / 10.0
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    # default bias draws kept: U(±1/sqrt(fan_in))
    assert first.bias.abs().max() <= 1 / math.sqrt(2)


def test_siren_and_nsiren_formulas():
    torch.manual_seed(0)
    siren = SIREN(1, 3, hidden_channels=8, num_layers=2, omega_0=7.0)
    nsiren = nSIREN(1, 3, hidden_channels=8, num_layers=2, omega_0=7.0)
    nsiren.load_state_dict(siren.state_dict())
    x = _grid1d()
    w, b = siren.hidden[0].weight, siren.hidden[0].bias
    out = siren.output_linear
    h_siren = torch.sin(7.0 * (w @ x[0] + b[:, None]))
    h_nsiren = torch.sin(7.0 * (w @ x[0]) + b[:, None])
    torch.testing.assert_close(siren(x)[0], out.weight @ h_siren + out.bias[:, None])
    torch.testing.assert_close(nsiren(x)[0], out.weight @ h_nsiren + out.bias[:, None])


def test_omega_0_buffer_or_named_parameter():
    fixed = SIREN(2, 4, omega_0=30.0)
    assert "hidden.0.omega_0" in fixed.state_dict()
    assert not any(n.endswith("omega_0") for n, _ in fixed.named_parameters())
    learned = SIREN(2, 4, omega_0=30.0, learn_omega_0=True)
    names = [n for n, _ in learned.named_parameters() if n.endswith("omega_0")]
    assert names == ["hidden.0.omega_0", "hidden.1.omega_0"]  # the solver's lr-factor hook
    assert learned.hidden[0].omega_0.item() == 30.0
    grid = torch.rand(1, 2, 4, 4)
    learned(grid).sum().backward()
    assert learned.hidden[0].omega_0.grad is not None


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
@pytest.mark.parametrize("cls", [SIREN, nSIREN])
def test_weight_norm_leaves_init_output_unchanged(cls):
    torch.manual_seed(0)
    plain = cls(2, 4)
    torch.manual_seed(0)
    normed = cls(2, 4, weight_norm=True)
    grid = torch.rand(1, 2, 5, 5) * 2 - 1
    torch.testing.assert_close(normed(grid), plain(grid), rtol=1e-4, atol=1e-5)
    assert "hidden.0.weight_v" in normed.state_dict() and "output_linear.weight_g" in normed.state_dict()


def test_frequency_terms_are_first_layer_radians():
    net = SIREN(2, 4, omega_0=30.0)
    (weight, gamma), = net.frequency_terms()
    assert gamma is None and weight.shape == (32, 2)
    torch.testing.assert_close(weight, 30.0 * net.hidden[0].weight)
    weight.abs().max().backward()
    assert net.hidden[0].weight.grad is not None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"omega_0": 0.0}, "`omega_0` must be a positive number"),  # the original's config default
        ({"omega_0": -1.0}, "`omega_0`"),
        ({"num_layers": 1}, "`num_layers` must be an integer >= 2"),
        ({"bias_init": "normal"}, "unknown `bias_init`"),
    ],
)
@pytest.mark.parametrize("cls", [SIREN, nSIREN])
def test_bad_hyper_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {match}"):
        cls(2, 4, **kwargs)

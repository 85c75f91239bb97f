"""Multiplicative filter networks: FourierNet, GaborNet (init statistics, formula, hooks)."""
import math

import pytest
import torch

from flexcore.layers.kernels import FourierNet, GaborNet, MAGNet


def _grid(dim, side):
    axis = torch.linspace(-1, 1, side)
    return torch.stack(torch.meshgrid(*([axis] * dim), indexing="ij")).unsqueeze(0)


def naive_mfn(net, positions):
    """The reference's formula, one filter and one position channel at a time."""
    x = positions[0].reshape(net.dim, -1)
    outs = []
    for f in net.filters:
        phase = f.linear.weight @ x + f.linear.bias[:, None]
        g = torch.sin(phase)
        if hasattr(f, "gamma"):
            sq = sum((f.gamma[:, d % f.gamma.shape[1], None] * (x[d][None] - f.mu[:, d, None])) ** 2 for d in range(net.dim))
            g = torch.exp(-0.5 * sq) * g
        outs.append(g)
    h = outs[0]
    for lin, g in zip(net.linear, outs[1:]):
        h = g * (lin.weight @ h + lin.bias[:, None])
    out = net.output_linear.weight @ h + net.output_linear.bias[:, None]
    return out.view(1, -1, *positions.shape[2:])


@pytest.mark.parametrize("cls", [FourierNet, GaborNet, MAGNet])
@pytest.mark.parametrize("dim", [1, 3])
def test_batched_filters_equal_the_naive_formula(cls, dim):
    torch.manual_seed(0)
    net = cls(dim, 5, hidden_channels=8, num_layers=2, input_scale=10.0)
    positions = _grid(dim, 4 if dim == 3 else 13)
    torch.testing.assert_close(net(positions), naive_mfn(net, positions), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [FourierNet, GaborNet, MAGNet])
def test_hidden_and_output_linear_init(cls):
    torch.manual_seed(0)
    hidden = 64
    net = cls(2, 10, hidden_channels=hidden, num_layers=3)
    bound = math.sqrt(1.0 / hidden)
    for lin in net.linear:
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.95 * bound
        assert lin.bias.abs().max() <= 1 / math.sqrt(hidden)  # default draw kept
    assert net.output_linear.weight.abs().max() <= 1 / math.sqrt(hidden)
    for f in net.filters:
        assert f.linear.bias.abs().max() <= math.pi and f.linear.bias.abs().max() > 2.8  # U(-π, π)


@pytest.mark.parametrize("bias_init, check", [("zero", lambda b: torch.all(b == 0)),
                                              ("uniform", lambda b: b.abs().max() <= 1 and b.abs().max() > 0.5)])
def test_bias_init_applies_to_hidden_and_output(bias_init, check):
    net = GaborNet(2, 16, hidden_channels=32, bias_init=bias_init)
    for lin in [*net.linear, net.output_linear]:
        assert check(lin.bias)


def test_fourier_filter_scale_and_default_input_scale():
    torch.manual_seed(0)
    net = FourierNet(2, 4, hidden_channels=256, num_layers=3)
    assert net.input_scale == 256.0  # the original CKConv never passed input_scale to it
    scale = 256.0 / math.sqrt(4)
    for f in net.filters:
        unscaled = f.linear.weight / scale
        assert unscaled.abs().max() <= 1 / math.sqrt(2) + 1e-6
        assert unscaled.abs().max() > 0.95 / math.sqrt(2)
        assert not hasattr(f, "gamma") and not hasattr(f, "mu")
    assert all(g is None for _, g in net.frequency_terms())


def test_gabor_gamma_isotropic_and_shared_concentration():
    torch.manual_seed(0)
    hidden, layers, scale = 4096, 3, 25.6
    net = GaborNet(2, 4, hidden_channels=hidden, num_layers=layers, input_scale=scale, init_spatial_value=0.5)
    concentration = 6.0 / (layers + 1)  # the same for every filter
    for f in net.filters:
        assert f.gamma.shape == (hidden, 1)
        # Gamma(k, 1): mean k, std sqrt(k / n) for the sample mean
        assert abs(f.gamma.mean().item() - concentration) < 4 * math.sqrt(concentration / hidden)
        assert abs(f.gamma.var().item() - concentration) < 0.15 * concentration
        unscaled = f.linear.weight / (scale / math.sqrt(layers + 1) * f.gamma)
        assert unscaled.abs().max() <= 1 / math.sqrt(2) * (1 + 1e-5)
        assert f.mu.abs().max() <= 0.5 and f.mu.abs().max() > 0.49


def test_set_spatial_init_is_bit_identical_to_construction():
    for value in (0.125025, 0.3, 0.7):
        torch.manual_seed(0)
        direct = GaborNet(2, 4, init_spatial_value=value)
        torch.manual_seed(0)
        hooked = GaborNet(2, 4)
        hooked.set_spatial_init(value)
        for key, tensor in direct.state_dict().items():
            assert torch.equal(hooked.state_dict()[key], tensor), key
        assert hooked.init_spatial_value == value


def test_set_spatial_init_from_any_start_value_and_clamp():
    """Exact from any start spread (not only 1.0): μ is re-derived from the unit draw."""
    torch.manual_seed(0)
    reference = GaborNet(2, 4, init_spatial_value=0.125025)
    torch.manual_seed(0)
    net = GaborNet(2, 4, init_spatial_value=0.3)
    net.set_spatial_init(0.125025)
    assert all(torch.equal(a.mu, b.mu) for a, b in zip(net.filters, reference.filters))
    net.set_spatial_init(5.0)  # clamped to 1, as CKConv does
    assert net.init_spatial_value == 1.0 and net.filters[0].mu.abs().max() <= 1.0


def test_set_spatial_init_refuses_trained_centres():
    net = GaborNet(2, 4)
    with torch.no_grad():
        net.filters[1].mu.add_(0.01)
    with pytest.raises(RuntimeError, match="freshly built"):
        net.set_spatial_init(0.1)


def test_frequency_terms_are_the_live_filter_parameters():
    net = GaborNet(2, 4, hidden_channels=8, num_layers=2)
    terms = net.frequency_terms()
    assert len(terms) == 3
    for (weight, gamma), f in zip(terms, net.filters):
        assert weight is f.linear.weight and gamma is f.gamma
        assert weight.shape == (8, 2) and gamma.shape == (8, 1)


def test_no_bias_keeps_filter_phases():
    net = FourierNet(2, 4, bias=False)
    keys = net.state_dict().keys()
    assert "linear.0.bias" not in keys and "output_linear.bias" not in keys
    assert "filters.0.linear.bias" in keys
    assert net(_grid(2, 5)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize("cls", [FourierNet, GaborNet, MAGNet])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_layers": 0}, "`num_layers` must be an integer >= 1"),
        ({"input_scale": 0.0}, "`input_scale` must be a positive number"),
        ({"weight_scale": -1.0}, "`weight_scale`"),
        ({"bias_init": "ones"}, "unknown `bias_init` 'ones'"),
    ],
)
def test_bad_hyper_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {match}"):
        cls(2, 4, **kwargs)


@pytest.mark.parametrize("cls", [GaborNet, MAGNet])
@pytest.mark.parametrize("kwargs, match", [({"init_spatial_value": -0.1}, "`init_spatial_value`"),
                                           ({"alpha": 0.0}, "`alpha`"), ({"beta": -2.0}, "`beta`")])
def test_bad_gabor_hyper_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {match}"):
        cls(2, 4, **kwargs)


def test_set_spatial_init_after_dtype_change_and_no_extra_buffers():
    torch.manual_seed(0)
    reference = MAGNet(2, 4, init_spatial_value=0.125025).double()
    torch.manual_seed(0)
    net = MAGNet(2, 4).double()
    net.set_spatial_init(0.125025)
    assert all(torch.equal(a.mu, b.mu) for a, b in zip(net.filters, reference.filters))
    assert dict(net.named_buffers()) == {}  # nothing for DDP to broadcast

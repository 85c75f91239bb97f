"""MAGNet: anisotropic Gamma init per layer, exact RNG order (incl. steerable), rotation."""
import math

import pytest
import torch
import torch.nn as nn

from flexcore.layers.kernels import MAGNet
from flexcore.layers.kernels.magnet import rotated_gaussian_window


def test_gamma_is_anisotropic_with_concentration_alpha_over_layer():
    torch.manual_seed(0)
    hidden, dim = 2048, 2
    net = MAGNet(dim, 4, hidden_channels=hidden, num_layers=3, input_scale=25.6)
    for layer, f in enumerate(net.filters):
        concentration = 6.0 / (layer + 1)  # 6, 3, 2, 1.5
        assert f.gamma.shape == (hidden, dim)
        n = f.gamma.numel()
        assert abs(f.gamma.mean().item() - concentration) < 4 * math.sqrt(concentration / n)
        # W = default draw (|.| <= 1/sqrt(D)) times (input_scale / sqrt(L+1)) * gamma, elementwise
        unscaled = f.linear.weight / (12.8 * f.gamma)
        assert unscaled.abs().max() <= 1 / math.sqrt(dim) * (1 + 1e-5)
        assert unscaled.abs().max() > 0.95 / math.sqrt(dim)


@pytest.mark.parametrize("steerable", [False, True])
def test_rng_order_replays_the_original(steerable):
    """hidden linears, output linear, hidden re-init, then per filter: W, b, μ, γ, b ~ U(-π, π), θ."""
    dim, hidden, out, layers, scale, spread = 2, 8, 6, 3, 25.6, 0.4
    torch.manual_seed(7)
    net = MAGNet(dim, out, hidden_channels=hidden, num_layers=layers, input_scale=scale,
                 init_spatial_value=spread, steerable=steerable)
    torch.manual_seed(7)
    lins = [nn.Conv2d(hidden, hidden, 1) for _ in range(layers)]
    out_lin = nn.Conv2d(hidden, out, 1)
    for lin in lins:
        lin.weight.data.uniform_(-math.sqrt(1 / hidden), math.sqrt(1 / hidden))
    for layer, f in enumerate(net.filters):
        conv = nn.Conv2d(dim, hidden, 1)
        mu = spread * (2 * torch.rand(hidden, dim) - 1)
        gamma = torch.distributions.Gamma(6.0 / (layer + 1), 1.0).sample((hidden, dim))
        conv.weight.data *= (scale / math.sqrt(layers + 1)) * gamma.view(hidden, dim, 1, 1)
        conv.bias.data.uniform_(-math.pi, math.pi)
        assert torch.equal(f.linear.weight, conv.weight.detach().flatten(1))
        assert torch.equal(f.linear.bias, conv.bias.detach())
        assert torch.equal(f.mu, mu) and torch.equal(f.gamma, gamma)
        if steerable:
            assert torch.equal(f.theta, torch.rand(hidden))
    for ours, ref in zip([*net.linear, net.output_linear], [*lins, out_lin]):
        assert torch.equal(ours.weight, ref.weight.detach().flatten(1))
        assert torch.equal(ours.bias, ref.bias.detach())


def test_steerable_window_rotates_the_gaussian():
    torch.manual_seed(0)
    x = torch.rand(2, 30) * 2 - 1
    mu, gamma, theta = torch.rand(5, 2) - 0.5, torch.rand(5, 2) * 4, torch.rand(5)
    window = rotated_gaussian_window(x, mu, gamma, theta)
    for h in range(5):
        a = 2 * math.pi * theta[h]
        rot = torch.stack([torch.stack([torch.cos(a), torch.sin(a)]), torch.stack([-torch.sin(a), torch.cos(a)])])
        r = rot @ (x - mu[h][:, None])
        expected = torch.exp(-0.5 * ((gamma[h][:, None] * r) ** 2).sum(0))
        torch.testing.assert_close(window[h], expected)
    # θ = 0 is the unrotated anisotropic window
    plain = torch.exp(-0.5 * ((gamma[:, :, None] * (x[None] - mu[:, :, None])) ** 2).sum(1))
    torch.testing.assert_close(rotated_gaussian_window(x, mu, gamma, torch.zeros(5)), plain)


def test_steerable_forward_uses_theta():
    torch.manual_seed(0)
    net = MAGNet(2, 3, hidden_channels=8, steerable=True, input_scale=25.6)
    grid = torch.rand(1, 2, 5, 5) * 2 - 1
    out = net(grid)
    out.sum().backward()
    assert all(f.theta.grad is not None and f.theta.grad.abs().sum() > 0 for f in net.filters)
    with torch.no_grad():
        for f in net.filters:
            f.theta.zero_()
    plain = MAGNet(2, 3, hidden_channels=8, input_scale=25.6)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.endswith("theta")})
    torch.testing.assert_close(net(grid), plain(grid))


def test_steerable_needs_2d():
    with pytest.raises(ValueError, match="MAGNet: `steerable=True` needs dim=2"):
        MAGNet(1, 4, steerable=True)


def test_frequency_terms_anisotropic():
    net = MAGNet(3, 4, hidden_channels=8, num_layers=2)
    terms = net.frequency_terms()
    assert [(w.shape, g.shape) for w, g in terms] == [((8, 3), (8, 3))] * 3


def test_set_spatial_init_steerable_keeps_theta():
    torch.manual_seed(0)
    ref = MAGNet(2, 4, steerable=True, init_spatial_value=0.125025)
    torch.manual_seed(0)
    net = MAGNet(2, 4, steerable=True)
    net.set_spatial_init(0.125025)
    for key, value in ref.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key

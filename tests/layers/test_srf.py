import math

import pytest
import torch

from flexcore.layers.srf import SRFConv, basis_orders, gaussian_derivatives


def test_basis_orders():
    assert basis_orders(1, 2) == [(0,), (1,), (2,)]
    assert basis_orders(2, 2) == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    assert len(basis_orders(3, 2)) == 10


def test_gaussian_derivatives_closed_form():
    sigma = torch.tensor(1.7, dtype=torch.float64)
    basis = gaussian_derivatives(sigma, 4, 2)
    x = torch.arange(-4, 5, dtype=torch.float64)
    g = torch.exp(-x * x / (2 * 1.7**2))
    g = g / g.sum()
    s = 1.7
    assert torch.allclose(basis[0], g)
    assert torch.allclose(basis[1], s * (-x / s**2) * g)  # sigma * dg/dx
    assert torch.allclose(basis[2], s**2 * (x * x / s**4 - 1 / s**2) * g)  # sigma^2 * d2g/dx2


def test_kernel_size_follows_the_scale():
    layer = SRFConv(2, 3, 2)  # sigma 1, k 2 -> radius 2 -> 5x5
    assert layer.kernel_size() == (5, 5)
    with torch.no_grad():
        layer.scale.fill_(1.0)  # sigma 2 -> 9x9
    assert layer.kernel_size() == (9, 9)
    assert layer.generate_kernel().shape == (3, 2, 9, 9)
    layer.scale_factor = 2.0  # testing at twice the resolution: sigma 4 -> 17x17
    assert layer.kernel_size() == (17, 17)


def test_kernel_is_linear_combination_of_basis_and_scale_learns():
    torch.manual_seed(0)
    layer = SRFConv(2, 3, 2, init_scale=0.5)
    basis = layer.basis()
    kernel = layer.generate_kernel()
    assert torch.allclose(kernel[1, 0], (layer.alphas[1, 0].view(-1, 1, 1) * basis).sum(0), atol=1e-6)
    y = layer(torch.randn(2, 2, 12, 12))
    y.square().sum().backward()
    assert layer.scale.grad is not None and layer.scale.grad.abs() > 0
    fixed = SRFConv(2, 3, 2, learn_scale=False)
    assert "scale" not in dict(fixed.named_parameters()) and "scale" in fixed.state_dict()


@pytest.mark.parametrize("dim", [1, 3])
def test_other_dims(dim):
    layer = SRFConv(2, 2, dim, order=1)
    assert layer.alphas.shape[-1] == dim + 1
    assert layer(torch.randn(1, 2, *([7] * dim))).shape == (1, 2, *([7] * dim))


def test_bad_order():
    with pytest.raises(ValueError, match="SRFConv: order"):
        SRFConv(1, 1, 2, order=7)


def test_set_scale_factor_reaches_every_srf_layer_of_a_model():
    from flexcore.layers import set_scale_factor

    model = torch.nn.Sequential(SRFConv(2, 3, 2), torch.nn.ReLU(), SRFConv(3, 3, 2))
    assert set_scale_factor(model, 2.0) == 2
    assert [m.kernel_size() for m in model if isinstance(m, SRFConv)] == [(9, 9), (9, 9)]
    assert set_scale_factor(torch.nn.Linear(2, 2), 2.0) == 0
    with pytest.raises(ValueError, match="scale_factor must be > 0"):
        set_scale_factor(model, 0.0)

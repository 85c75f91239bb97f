import math

import pytest
import torch
import torch.nn as nn

from flexcore.registry import REGULARIZERS
from flexcore.regularizers.antialiasing import (
    AntiAliasing,
    filter_frequencies,
    frequency_summaries,
    layer_frequencies,
    nyquist_frequency,
)

TWO_PI = 2 * math.pi


class GaborTerms(nn.Module):
    """A kernel net plugin that only exposes fixed frequency terms."""

    def __init__(self, terms):
        super().__init__()
        self.terms = [(nn.Parameter(w), None if g is None else nn.Parameter(g)) for w, g in terms]
        for i, (w, g) in enumerate(self.terms):
            self.register_parameter(f"w{i}", w)
            if g is not None:
                self.register_parameter(f"g{i}", g)

    def frequency_terms(self):
        return self.terms


class SigmaMask(nn.Module):
    def __init__(self, sigma):
        super().__init__()
        self.sigma = nn.Parameter(torch.tensor(sigma))

    def inverse_widths(self):
        return 1.0 / self.sigma.abs()


class PluginConv(nn.Module):
    def __init__(self, terms, sigma=None, grid_length=33):
        super().__init__()
        self.kernel_net = GaborTerms(terms)
        self.mask = SigmaMask(sigma) if sigma is not None else None
        self.grid_length = grid_length

    def grid_size(self):
        if not self.grid_length:
            raise RuntimeError("grid not fixed")
        return (self.grid_length, self.grid_length + 4)


W0 = torch.tensor([[30.0, -4.0], [2.0, 1.0]])   # radians per unit, (H=2, D=2)
G0 = torch.tensor([[1.0, 6.0], [5.0, 0.5]])
W1 = torch.tensor([[-10.0, 3.0], [7.0, 8.0]])
G1 = torch.tensor([[2.0], [1.0]])                # isotropic (H, 1)


def test_nyquist():
    assert nyquist_frequency(33) == 8.0 and nyquist_frequency(32) == 7.75 and nyquist_frequency(17) == 4.0


def test_filter_frequencies_by_hand():
    s = 2.0
    # per unit and dim: max(|W| + |γ| s) / 2π
    per_unit = filter_frequencies([(W0, G0), (W1, G1)], "gabor", s, per_unit=True)
    assert torch.allclose(per_unit, torch.tensor([(30 + 2) / TWO_PI, (10 + 4) / TWO_PI]))
    # original code: separate maxima
    separate = filter_frequencies([(W0, G0), (W1, G1)], "gabor", s, per_unit=False)
    assert torch.allclose(separate, torch.tensor([(30 + 12) / TWO_PI, (10 + 4) / TWO_PI]))
    assert torch.allclose(filter_frequencies([(W0, G0)], "sines", s), torch.tensor([30 / TWO_PI]))
    assert torch.allclose(filter_frequencies([(W0, G0)], "gausses", s), torch.tensor([12 / TWO_PI]))
    # no Gaussian (Fourier, SIREN): the sine term alone
    assert torch.allclose(filter_frequencies([(W1, None)], "gabor", s), torch.tensor([10 / TWO_PI]))


def test_together_gabor_by_hand():
    model = nn.Sequential(PluginConv([(W0, G0), (W1, G1)], grid_length=9))
    f = torch.tensor([32.0, 14.0]) / TWO_PI
    target = nyquist_frequency(9) / 2  # Nyquist 2.0 shared by 2 filters
    expected = 0.5 * torch.relu(f - target).square().sum()
    got = AntiAliasing(factor=0.5, target="gabor", gauss_stddevs=2.0)(model)
    assert torch.allclose(got, expected)
    # res overrides the layer's own grid length
    got33 = AntiAliasing(factor=1.0, target="gabor", res=33)(model)
    assert torch.allclose(got33, torch.relu(f - 4.0).square().sum())


def test_gabor_mask_and_summed_by_hand():
    sigma = [0.2, -0.1]  # sign irrelevant; 1/0.1 = 10 wins
    conv = PluginConv([(W0, G0), (W1, G1)], sigma=sigma, grid_length=33)
    ckconv = PluginConv([(W1, None)], grid_length=17)  # no mask: no mask term
    model = nn.ModuleDict({"a": conv, "b": ckconv})
    f_mask = 10.0 * 2.0 / TWO_PI
    f_a = torch.tensor([32.0, 14.0]) / TWO_PI
    f_b = torch.tensor([10.0]) / TWO_PI
    together = torch.cat([f_a + f_mask / 2 - 8.0 / 2, f_b - 4.0])
    got = AntiAliasing(factor=1.0, target="gabor+mask", method="together")(model)
    assert torch.allclose(got, torch.relu(together).square().sum())
    summed = torch.stack([f_a.sum() + f_mask - 8.0, f_b.sum() - 4.0])
    got = AntiAliasing(factor=1.0, target="gabor+mask", method="summed")(model)
    assert torch.allclose(got, torch.relu(summed).square().sum())
    u = together
    elu = AntiAliasing(factor=1.0, target="gabor+mask", penalty="offset_elu")(model)
    assert torch.allclose(elu, (5 * torch.where(u > 4, u - 3, torch.exp(u - 4))).sum())


def test_gradient_reaches_frequencies_and_mask():
    conv = PluginConv([(W0, G0)], sigma=[0.01, 0.01], grid_length=5)
    AntiAliasing(target="gabor+mask")(conv).backward()
    assert conv.kernel_net.w0.grad[0, 0] > 0 and conv.mask.sigma.grad.abs().sum() > 0


def test_errors():
    with pytest.raises(ValueError, match="no continuous convolution"):
        AntiAliasing()(nn.Sequential(nn.Conv2d(1, 1, 3)))
    with pytest.raises(ValueError, match="needs layers with a Gaussian mask"):
        AntiAliasing(target="gabor+mask")(PluginConv([(W0, G0)]))
    with pytest.raises(RuntimeError, match="no grid size yet"):
        AntiAliasing()(PluginConv([(W0, G0)], grid_length=0))
    with pytest.raises(ValueError, match="unknown method"):
        AntiAliasing(method="distributed")
    with pytest.raises(ValueError, match="unknown penalty"):
        AntiAliasing(penalty="l1")


def test_registered_and_summaries():
    reg = REGULARIZERS.build("AntiAliasing", factor=0.1, target="gabor")
    assert isinstance(reg, AntiAliasing)
    model = nn.ModuleDict({"a": PluginConv([(W0, G0)], sigma=[0.5, 0.25])})
    stats = frequency_summaries(model)
    assert math.isclose(stats["sines_freq/a"], 30 / TWO_PI, rel_tol=1e-6)
    assert math.isclose(stats["mask_freq/a"], 4 / TWO_PI, rel_tol=1e-6)
    layers = layer_frequencies(model, "gabor", nyquist=False)
    assert layers[0].nyquist is None


# -- with flexcore's layers and the original's fixture ------------------------------------------
def flexnet7_from_fixture(folder):
    import json

    from flexcore.compat.original.weights import convert_original_model
    from flexcore.compat.original.spec import spec_from_config

    meta = json.loads((folder / "flexnet7_cifar10.json").read_text())
    ref = torch.load(folder / "flexnet7_cifar10.pt", weights_only=True)
    spec = spec_from_config(meta["config"], 3, 10)
    model = spec.build()
    model.load_state_dict(convert_original_model(ref["state_dict"], spec.kernel_type, spec.dim))
    return model


def test_fixture_values_with_the_original_option(seed_fixtures):
    import json

    model = flexnet7_from_fixture(seed_fixtures)
    meta = json.loads((seed_fixtures / "antialias_flexnet7.json").read_text())
    ref = torch.load(seed_fixtures / "antialias_flexnet7.pt", weights_only=True)
    assert len(meta["calls"]) == 8
    for call, expected in zip(meta["calls"], ref["output"]):
        reg = AntiAliasing(factor=call["factor"], target=call["target"], method=call["method"],
                           penalty=call["fn"], gauss_stddevs=call["gauss_stddevs"], res=call["horizon"],
                           per_unit=False)
        value = reg(model)
        assert abs(value.item() - expected.item()) <= 1e-5 * abs(expected.item()), call
    # per-layer, per-filter frequencies and mask terms
    for target in ("gabor", "gabor+mask"):
        layers = layer_frequencies(model, target, gauss_stddevs=2.0, per_unit=False, res=33)
        assert [layer.name for layer in layers] == meta["flexconv_modules"]
        got = torch.stack([layer.filters for layer in layers])
        assert torch.allclose(got, ref["frequencies"][target]["filter_freqs"], rtol=1e-6)
        if target == "gabor+mask":
            masks = torch.stack([layer.mask for layer in layers])
            assert torch.allclose(masks, ref["frequencies"][target]["mask_freqs"], rtol=1e-6)


def test_real_magnet_by_hand_and_own_grid(seed_fixtures):
    model = flexnet7_from_fixture(seed_fixtures)
    conv = model.blocks[2].cconv1
    s = 2.0
    expected = []
    for f in conv.kernel_net.filters:
        per_unit = (f.linear.weight.abs() / TWO_PI + f.gamma.abs() * s / TWO_PI).max()
        expected.append(per_unit)
    layer = [l for l in layer_frequencies(model, "gabor", s) if l.name == "blocks.2.cconv1"][0]
    assert torch.allclose(layer.filters, torch.stack(expected))
    assert layer.nyquist == 8.0  # horizon 33, from the layer itself
    # per unit is never above the original's separate maxima, and lower on this net
    paper = AntiAliasing(factor=1.0, target="gabor", gauss_stddevs=s)(model)
    original = AntiAliasing(factor=1.0, target="gabor", gauss_stddevs=s, per_unit=False)(model)
    assert paper < original
    assert torch.allclose(paper, AntiAliasing(factor=1.0, target="gabor", gauss_stddevs=s, res=33)(model))
    # a CKConv/MAGNet model works too (no mask term needed for 'gabor')
    paper.backward()
    assert conv.kernel_net.filters[0].gamma.grad is not None

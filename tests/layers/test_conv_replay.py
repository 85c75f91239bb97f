"""The conv/mask/crop half of fixture parity, independent of the kernel nets.

The kernel net is replaced by one that checks the positions it receives against the
fixture's ``rel_positions`` and returns the fixture's ``kernel_net_output``; everything
else (grid, crop, mask, sampling-rate factor, padding, spatial or FFT path, bias) is ours.
"""
import pytest
import torch
import torch.nn as nn

from flexcore.layers import CKConv, FlexConv
from flexcore.utils.testing import SEED_LAYER_CASES, load_seed_case


class Replay(nn.Module):
    def __init__(self, positions, output):
        super().__init__()
        self.positions, self.output = positions, output
        self.weight = nn.Parameter(torch.zeros(1))  # a parameter, so the layer knows dtype/device

    def forward(self, positions):
        assert torch.equal(positions, self.positions), "grid fed to the kernel net differs from the original"
        return self.output + 0 * self.weight


def build_replay(meta, data):
    kw = meta["constructor_kwargs"]
    dim = kw["kernel_dim_linear"]
    factory = lambda d, out: Replay(data["rel_positions"], data["kernel_net_output"])  # noqa: E731
    common = dict(
        kernel_net=factory, horizon=kw["horizon"], bias=kw["conv_bias"], causal=dim == 1,
        fft=bool(kw["conv_use_fft"]) and "fft" in meta["case"], sampling_rate_norm=kw["kernel_sampling_rate_norm"],
    )
    if meta["original_class"].endswith("FlexConv"):
        layer = FlexConv(kw["in_channels"], kw["out_channels"], dim, dynamic_cropping=kw["mask_dynamic_cropping"], **common)
        sd = data["state_dict"]
        with torch.no_grad():
            layer.mask.mean.copy_(sd["mask_params"][:, 0])
            layer.mask.sigma.copy_(sd["mask_params"][:, 1])
            layer.mask.threshold.copy_(sd["mask_threshold"])
    else:
        layer = CKConv(kw["in_channels"], kw["out_channels"], dim, **common)
    with torch.no_grad():
        layer.bias.copy_(data["state_dict"]["bias"])
    return layer.eval()


@pytest.mark.parametrize("case", SEED_LAYER_CASES)
def test_layer_reproduces_original_given_the_kernel_net_output(seed_fixtures, case):
    meta, data = load_seed_case(seed_fixtures, case)
    layer = build_replay(meta, data)
    with torch.no_grad():
        out = layer(data["input"])
    assert layer.kernel_size() == tuple(meta["kernel_shape"][2:])
    ref = data["output"]
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    kernel = layer.conv_kernel
    assert kernel.shape == data["kernel"].shape
    assert (kernel - data["kernel"]).abs().max() <= 1e-6 * data["kernel"].abs().max()
    if "mask" in data:
        grid = layer.full_grid()[(slice(None), slice(None), *layer.crop())]
        assert torch.equal(grid, data["rel_positions"])
        assert torch.equal(layer.mask(grid), data["mask"])  # bit-exact float32 evaluation order

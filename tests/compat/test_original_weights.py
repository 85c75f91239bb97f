"""Converter from the original FlexConv state-dict layout to flexcore's (kernel-net part)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.compat.original.weights import (
    OriginalCheckpointError,
    ckconv_kwargs_from_config,
    convert_kernel_net,
    kernel_net_config,
    load_original_kernel_net,
    pointwise_to_matrix,
)
from flexcore.layers.kernels import MLP, SIREN


class _OriginalLayerNorm(nn.Module):  # the original wraps GroupNorm(1) as `.layer_norm`
    def __init__(self, channels):
        super().__init__()
        self.layer_norm = nn.GroupNorm(1, channels, eps=1e-12)

    def forward(self, x):
        return self.layer_norm(x)


def _original_mlp(norm, weight_norm):
    """A module with the original MLP's layout: Sequential(Conv, Norm, ReLU, Conv, Norm, ReLU, Conv)."""
    make_norm = {"LayerNorm": _OriginalLayerNorm, "BatchNorm": nn.BatchNorm2d}[norm]
    layers = [nn.Conv2d(2, 8, 1), make_norm(8), nn.ReLU(), nn.Conv2d(8, 8, 1), make_norm(8), nn.ReLU(), nn.Conv2d(8, 6, 1)]
    with torch.no_grad():
        for m in layers:
            for p in m.parameters():
                p.normal_()
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(5)
    if weight_norm:
        layers = [nn.utils.weight_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers]
    return nn.Sequential(*layers)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
@pytest.mark.parametrize("norm", ["LayerNorm", "BatchNorm"])
@pytest.mark.parametrize("weight_norm", [False, True])
def test_mlp_layout_norms_and_weight_norm(norm, weight_norm):
    torch.manual_seed(0)
    original = _original_mlp(norm, weight_norm).eval()
    sd = {f"blocks.1.cconv2.Kernel.kernel_net.{k}": v for k, v in original.state_dict().items()}
    net = MLP(2, 6, hidden_channels=8, num_layers=3, norm=norm, weight_norm=weight_norm).eval()
    load_original_kernel_net(net, sd, "blocks.1.cconv2.Kernel.")
    grid = torch.rand(1, 2, 5, 5) * 2 - 1
    torch.testing.assert_close(net(grid), original(grid), rtol=1e-5, atol=1e-5)
    if norm == "BatchNorm":
        assert net.norms[1].num_batches_tracked.item() == 5


class _OriginalSineLayer(nn.Conv2d):
    def __init__(self, cin, cout, omega_0):
        super().__init__(cin, cout, 1)
        self.register_buffer("omega_0", torch.full((1,), omega_0))

    def forward(self, x):
        return self.omega_0 * F.conv2d(x, self.weight, self.bias)


class _Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
@pytest.mark.parametrize("weight_norm", [False, True])
def test_siren_layout(weight_norm):
    torch.manual_seed(0)
    layers = [_OriginalSineLayer(2, 8, 5.0), _Sine(), _OriginalSineLayer(8, 8, 5.0), _Sine(), nn.Conv2d(8, 4, 1)]
    if weight_norm:
        layers = [nn.utils.weight_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers]
    original = nn.Sequential(*layers)
    sd = {f"Kernel.kernel_net.{k}": v for k, v in original.state_dict().items()}
    converted = convert_kernel_net(sd, "Kernel.", "SIREN")
    assert "hidden.1.omega_0" in converted and "output_linear.bias" in converted
    net = SIREN(2, 4, hidden_channels=8, omega_0=5.0, weight_norm=weight_norm)
    net.load_state_dict(converted)
    grid = torch.rand(1, 2, 4, 4) * 2 - 1
    torch.testing.assert_close(net(grid), original(grid), rtol=1e-5, atol=1e-5)


def test_new_prefix_and_pointwise_reshape():
    sd = {"c.Kernel.linear.0.weight": torch.ones(3, 3, 1, 1), "c.Kernel.filters.0.mu": torch.ones(3, 2),
          "other.weight": torch.ones(1)}
    out = convert_kernel_net(sd, "c.Kernel.", "MAGNet", new_prefix="c.kernel_net.")
    assert set(out) == {"c.kernel_net.linear.0.weight", "c.kernel_net.filters.0.mu"}
    assert out["c.kernel_net.linear.0.weight"].shape == (3, 3)
    assert pointwise_to_matrix(torch.ones(4, 2, 1)).shape == (4, 2)
    assert pointwise_to_matrix(torch.ones(4, 2, 3)).shape == (4, 2, 3)


def test_errors_name_prefix_family_and_keys():
    with pytest.raises(OriginalCheckpointError, match="No entries under prefix 'Kernel.'"):
        convert_kernel_net({"x.weight": torch.ones(1)}, "Kernel.", "MAGNet")
    with pytest.raises(OriginalCheckpointError, match="Unknown kernel family 'RBF'"):
        convert_kernel_net({"Kernel.a": torch.ones(1)}, "Kernel.", "RBF")
    with pytest.raises(OriginalCheckpointError, match="Unexpected key 'Kernel.kernel_net.0.weight'"):
        convert_kernel_net({"Kernel.kernel_net.0.weight": torch.ones(1)}, "Kernel.", "MAGNet")
    with pytest.raises(OriginalCheckpointError, match="kernel_net.<i>"):
        convert_kernel_net({"Kernel.linear.0.weight": torch.ones(1)}, "Kernel.", "SIREN")


def test_load_reports_hyper_parameter_mismatch():
    torch.manual_seed(0)
    original = _original_mlp("LayerNorm", False)
    sd = {f"Kernel.kernel_net.{k}": v for k, v in original.state_dict().items()}
    net = MLP(2, 6, hidden_channels=16, norm="LayerNorm")  # the original has 8
    with pytest.raises(OriginalCheckpointError, match=r"shape differs \(checkpoint -> model\)(.|\n)*hidden.0.weight: \(8, 2\) -> \(16, 2\)"):
        load_original_kernel_net(net, sd)
    with pytest.raises(OriginalCheckpointError, match=r"in the model but not in the checkpoint(.|\n)*norms"):
        load_original_kernel_net(MLP(2, 6, hidden_channels=8, norm="BatchNorm"), sd)


def test_kernel_net_config_reproduces_the_original_constructor():
    assert kernel_net_config({"kernel_type": "Fourier", "kernel_input_scale": 25.6}) == (
        "FourierNet", {"hidden_channels": 32, "num_layers": 3, "bias": True, "bias_init": None})
    name, hp = kernel_net_config({"kernel_type": "MAGNet", "mask_init_value": 0.075, "kernel_init_spatial_value": 1.0})
    assert name == "MAGNet" and hp["init_spatial_value"] == 0.125025 and hp["input_scale"] == 25.6
    assert kernel_net_config({"kernel_type": "Gabor", "kernel_init_spatial_value": 3.0})[1]["init_spatial_value"] == 1.0
    assert kernel_net_config({"kernel_type": "MLP", "kernel_norm": ""})[1]["norm"] is None
    with pytest.raises(OriginalCheckpointError, match="Unknown original kernel type 'RBF'"):
        kernel_net_config({"kernel_type": "RBF"})


def test_ckconv_kwargs_from_config():
    config = {"kernel": {"type": "MAGNet", "no_hidden": 16, "regularize_params": {"res": 0}},
              "conv": {"bias": False}, "mask": {"init_value": 0.1}}
    kwargs = ckconv_kwargs_from_config(config)
    assert kwargs == {"kernel_type": "MAGNet", "kernel_no_hidden": 16, "conv_bias": False, "mask_init_value": 0.1}

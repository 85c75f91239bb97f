"""RFFNet: a kernel net registered from outside flexcore, used through the registry and gin."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flexcore.projects.rff_kernels  # noqa: F401  (registers RFFNet)
from flexcore.config import parse_config
from flexcore.registry import CONVS, KERNEL_NETS
from flexcore.regularizers.antialiasing import AntiAliasing, filter_frequencies

GIN_FILE = Path(__file__).resolve().parents[1] / "gin_configs" / "rff_kernel.gin"


def _grid(dim, side):
    axis = torch.linspace(-1, 1, side)
    return torch.stack(torch.meshgrid(*([axis] * dim), indexing="ij")).unsqueeze(0)


def test_registered_only_once_the_plugin_is_imported():
    code = (
        "from flexcore.registry import KERNEL_NETS; a = 'RFFNet' in KERNEL_NETS; "
        "import flexcore.projects.rff_kernels; print(a, 'RFFNet' in KERNEL_NETS)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.stdout.split() == ["False", "True"]
    assert KERNEL_NETS.get_raw("RFFNet").__module__ == "flexcore.projects.rff_kernels.rff_net"


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_contract_shapes_and_gradients(dim):
    torch.manual_seed(0)
    net = KERNEL_NETS.build("RFFNet", dim, 6, learn_frequencies=True)
    positions = _grid(dim, {1: 9, 2: 5, 3: 3}[dim])
    out = net(positions)
    assert out.shape == (1, 6, *positions.shape[2:]) and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match=r"RFFNet\(dim=%d\) expects relative positions" % dim):
        net(torch.zeros(1, dim + 1, 3))


def test_features_estimate_a_gaussian_kernel():
    """Fixed random features: <z(x), z(y)> / (H/2) -> exp(-½ (2π ω₀)² |x − y|²)."""
    torch.manual_seed(0)
    omega_0, pairs = 0.5, 2 ** 14
    net = KERNEL_NETS.build("RFFNet", 2, 1, hidden_channels=2 * pairs, num_layers=1, omega_0=omega_0)
    x = torch.rand(2, 64) * 2 - 1
    z = net.features(x)
    estimate = z.T @ z / pairs
    sq_dist = torch.cdist(x.T, x.T) ** 2
    expected = torch.exp(-0.5 * (2 * math.pi * omega_0) ** 2 * sq_dist)
    assert (estimate - expected).abs().max() < 5 / math.sqrt(pairs)
    assert net.frequencies.std().item() == pytest.approx(2 * math.pi * omega_0, rel=0.02)


def test_fixed_frequencies_are_a_saved_buffer():
    fixed = KERNEL_NETS.build("RFFNet", 2, 4)
    assert "frequencies" in fixed.state_dict()
    assert "frequencies" not in dict(fixed.named_parameters())
    learned = KERNEL_NETS.build("RFFNet", 2, 4, learn_frequencies=True)
    assert "frequencies" in dict(learned.named_parameters())


def test_frequency_terms_feed_the_anti_aliasing_regulariser():
    net = KERNEL_NETS.build("RFFNet", 2, 4, omega_0=1.0)
    (weight, gamma), = net.frequency_terms()
    assert weight.shape == (16, 2) and gamma is None
    max_freq = filter_frequencies(net.frequency_terms(), target="gabor")
    assert max_freq.item() == pytest.approx(net.frequencies.abs().max().item() / (2 * math.pi))


def test_project_gin_file_puts_rffnet_into_flexconv():
    assert GIN_FILE.read_text().splitlines()[0] == "import flexcore.projects.rff_kernels"
    parse_config(["rff_kernel.gin"], bindings=["RFFNet.num_layers = 3"])
    conv = CONVS.build("FlexConv", 3, 4, 2, horizon=9)
    net = conv.kernel_net
    assert type(net).__name__ == "RFFNet" and net.out_channels == 3 * 4
    assert (net.hidden_channels, net.num_layers, net.omega_0) == (32, 3, 2.0)
    x = torch.randn(2, 3, 8, 8)
    out = conv(x)
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()
    # the anti-aliasing regulariser bounds RFFNet's frequencies through frequency_terms()
    loss = out.square().mean() + AntiAliasing(factor=1.0, target="gabor", res=9)(conv)
    loss.backward()
    assert net.output_linear.weight.grad is not None


def test_experiment_gin_file_builds_and_runs_a_step():
    import flexcore.engine.trainer  # noqa: F401  (the Trainer configurable the file binds)

    parse_config(["digits_flexnet_rff.gin"], bindings=["Schedule.epochs = 1"], finalize=False)
    from flexcore.data.base import build_dataset
    from flexcore.modeling import build_model

    dataset = build_dataset(name="Digits", split="train")
    model = build_model(dataset.metadata)
    kernel_nets = [m.kernel_net for m in model.modules() if hasattr(m, "kernel_net")]
    assert kernel_nets and all(type(k).__name__ == "RFFNet" for k in kernel_nets)
    x, y = zip(*(dataset[i] for i in range(4)))
    logits = model(torch.stack([torch.as_tensor(v) for v in x]))
    torch.nn.functional.cross_entropy(logits, torch.as_tensor(y)).backward()


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_channels": 7}, "`hidden_channels` must be an even integer"),
    ({"num_layers": 0}, "`num_layers`"),
    ({"omega_0": 0.0}, "`omega_0`"),
    ({"activation": "tanh"}, "unknown `activation`"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=f"RFFNet: {match}"):
        KERNEL_NETS.build("RFFNet", 2, 4, **kwargs)


def test_parameter_count_as_in_readme():
    net = KERNEL_NETS.build("RFFNet", 2, 24 * 3)
    assert sum(p.numel() for p in net.parameters()) == 32 * 32 + 32 + 33 * 24 * 3


def test_experiment_is_the_quick_start_with_rff_kernels():
    import gin

    def bindings(files):
        gin.clear_config()
        parse_config(files, finalize=False)
        return {line for line in gin.config_str().splitlines() if " = " in line}

    quick, rff = bindings(["quick/digits_flexnet.gin"]), bindings(["digits_flexnet_rff.gin"])
    gin.clear_config()
    assert quick - rff == {"FlexConv.kernel_net = @MAGNet", "CKConv.kernel_net = @MAGNet"}
    assert all(b.startswith(("FlexConv.kernel_net", "CKConv.kernel_net", "RFFNet.")) for b in rff - quick)

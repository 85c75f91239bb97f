import textwrap

import pytest
import torch
import torch.nn as nn

from flexcore.registry import MASKS, load_plugin
from flexcore.solver import SGD, Adam, AdamW, RMSprop, build_param_groups


class _Sine(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 4)
        self.omega_0 = nn.Parameter(torch.tensor(30.0))


def _model(mask_cls):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),              # 0: weight default, bias no_decay
        nn.BatchNorm2d(4),               # 1: norm
        _Sine(),                         # 2: linear + omega_0
        mask_cls(2),                     # 3: mask params
        nn.Linear(4, 2, bias=False),     # 4
    )


@pytest.fixture(scope="module")
def plugin_mask(tmp_path_factory):
    """A mask class registered by a plugin file, as a user would."""
    path = tmp_path_factory.mktemp("plugin") / "my_mask.py"
    path.write_text(textwrap.dedent(
        """
        import torch, torch.nn as nn
        from flexcore.registry import MASKS

        @MASKS.register()
        class PluginWindowMask(nn.Module):
            def __init__(self, dim, causal=False):
                super().__init__()
                self.width = nn.Parameter(torch.ones(dim))
                self.offset = nn.Parameter(torch.zeros(dim))
        """
    ))
    return load_plugin(str(path)).PluginWindowMask


def test_groups_factors_and_decay_rules(plugin_mask):
    model = _model(plugin_mask)
    groups = build_param_groups(model, weight_decay=1e-4, mask_lr_factor=0.1, omega_0_lr_factor=5.0)
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["default", "no_decay_bias", "no_decay_norm", "mask", "omega_0"]
    ids = lambda ps: [id(p) for p in ps]  # noqa: E731
    assert ids(by_name["default"]["params"]) == ids([model[0].weight, model[2].linear.weight, model[4].weight])
    assert ids(by_name["no_decay_bias"]["params"]) == ids([model[0].bias, model[2].linear.bias])
    assert ids(by_name["no_decay_norm"]["params"]) == ids([model[1].weight, model[1].bias])
    assert ids(by_name["mask"]["params"]) == ids([model[3].width, model[3].offset])
    assert ids(by_name["omega_0"]["params"]) == ids([model[2].omega_0])
    assert by_name["default"]["weight_decay"] == 1e-4
    assert all(by_name[n]["weight_decay"] == 0.0 for n in ("no_decay_bias", "no_decay_norm", "mask", "omega_0"))
    assert (by_name["mask"]["lr_factor"], by_name["omega_0"]["lr_factor"]) == (0.1, 5.0)
    # Asked-for decay on biases and norms.
    groups = build_param_groups(model, weight_decay=1e-4, weight_decay_bias=1e-5, weight_decay_norm=2e-5)
    decays = {g["name"]: g["weight_decay"] for g in groups}
    assert decays["no_decay_bias"] == 1e-5 and decays["no_decay_norm"] == 2e-5


def test_order_is_deterministic_and_shared_params_counted_once(plugin_mask):
    model = _model(plugin_mask)
    model.append(model[4])  # shared module
    first = [[id(p) for p in g["params"]] for g in build_param_groups(model)]
    second = [[id(p) for p in g["params"]] for g in build_param_groups(model)]
    assert first == second
    assert sum(len(g) for g in first) == sum(1 for _ in model.parameters())


def test_frozen_params_are_left_out(plugin_mask):
    model = _model(plugin_mask)
    model[0].weight.requires_grad_(False)
    names = [id(p) for g in build_param_groups(model) for p in g["params"]]
    assert id(model[0].weight) not in names


@pytest.mark.parametrize("factory", [Adam, AdamW, SGD, RMSprop])
def test_optimizers_apply_lr_factors(factory, plugin_mask):
    model = _model(plugin_mask)
    opt = factory(build_param_groups(model, mask_lr_factor=0.1, omega_0_lr_factor=3.0), lr=0.02)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["default"] == pytest.approx(0.02)
    assert lrs["mask"] == pytest.approx(0.002)
    assert lrs["omega_0"] == pytest.approx(0.06)


def test_optimizer_accepts_plain_parameters_and_rejects_bad_nesterov():
    model = nn.Linear(2, 2)
    opt = SGD(model.parameters(), lr=0.5, momentum=0.9, nesterov=True)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["nesterov"]
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        SGD(model.parameters(), lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="no trainable parameter"):
        Adam([], lr=0.1)

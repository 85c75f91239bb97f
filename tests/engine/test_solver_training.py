"""Every optimiser and schedule in a real short training (tiny model, CPU)."""
import json
import math
import os

import gin
import pytest
import torch

from flexcore.config import parse_config
from flexcore.engine.trainer import Trainer
from flexcore.registry import LR_SCHEDULES, OPTIMIZERS
from flexcore.utils.logger import setup_logger

from conftest import TINY_PLUGIN

BASE = [
    "Data.dataset = 'TinyShapes'",
    "build_model.backbone = @TinyNet",
    "Data.batch_size = 32",  # 4 iterations per epoch
    "Schedule.epochs = 3",
    "Schedule.log_period = 1",
    "Outputs.tensorboard = False",
    "Outputs.kernel_report = False",  # matplotlib PNGs: seconds per run, checked in tests/analysis
    "Data.test_split = None",
    "build_param_groups.mask_lr_factor = 0.1",
]

SCHEDULES = {
    "Constant": ["Constant.warmup_iters = 2"],
    "Cosine": ["Cosine.warmup_epochs = 1"],
    "MultiStep": ["MultiStep.milestones = [1, 2]", "MultiStep.gamma = 0.5"],
    "Exponential": ["Exponential.gamma = 0.5"],
    "Plateau": ["Plateau.patience = 0", "Plateau.factor = 0.5", "Plateau.threshold = 10.0"],  # decays every epoch
}
OPTIMIZERS_LR = {"Adam": 0.01, "AdamW": 0.01, "SGD": 0.05, "RMSprop": 0.005}


def _run(tmp_path, bindings):
    gin.clear_config()
    parse_config([], BASE + bindings, plugins=[TINY_PLUGIN], finalize=False)
    setup_logger(str(tmp_path))
    trainer = Trainer(str(tmp_path))
    start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.resume_or_load(resume=False)
    trainer.train()
    lines = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.json"))]
    return trainer, start, [ln for ln in lines if "loss" in ln]


def test_every_builtin_is_covered():
    assert set(OPTIMIZERS.list()) >= set(OPTIMIZERS_LR) and set(LR_SCHEDULES.list()) >= set(SCHEDULES)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_in_training(tmp_path, tiny_plugin, name):
    trainer, _, steps = _run(tmp_path, [f"Solver.lr_schedule = @{name}", "Solver.lr = 0.02"] + SCHEDULES[name])
    lrs = [s["lr"] for s in steps]
    assert [s["lr/mask"] for s in steps] == pytest.approx([0.1 * lr for lr in lrs]) or name == "Cosine"
    expected = {
        "Constant": [0.01, 0.02] + [0.02] * 10,
        "MultiStep": [0.02] * 4 + [0.01] * 4 + [0.005] * 4,
        "Exponential": [0.02] * 4 + [0.01] * 4 + [0.005] * 4,
        "Plateau": [0.02] * 8 + [0.01] * 4,  # first evaluation sets the best, the second decays
    }
    if name == "Cosine":
        assert lrs[:4] == pytest.approx([0.005, 0.01, 0.015, 0.02])
        assert lrs[4:] == pytest.approx([1e-6 + (0.02 - 1e-6) * 0.5 * (1 + math.cos(math.pi * i / 8)) for i in range(8)])
    else:
        assert lrs == pytest.approx(expected[name])
    assert all(math.isfinite(s["loss"]) for s in steps)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS_LR))
def test_optimizer_in_training(tmp_path, tiny_plugin, name):
    extra = ["SGD.nesterov = True"] if name == "SGD" else []
    trainer, start, steps = _run(tmp_path, [f"Solver.optimizer = @{name}", f"Solver.lr = {OPTIMIZERS_LR[name]}",
                                            "Schedule.epochs = 4", "build_param_groups.weight_decay = 1e-4"] + extra)
    assert type(trainer.optimizer).__name__ == name
    end = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in end.values())
    assert not torch.equal(start["head.weight"], end["head.weight"])
    losses = [s["loss"] for s in steps]
    assert sum(losses[-4:]) < sum(losses[:4])  # the last epoch beats the first


def test_gradient_clipping(tmp_path, tiny_plugin):
    trainer, _, steps = _run(tmp_path, ["Solver.grad_clip = 0.05", "Schedule.epochs = 1"])
    assert all("grad_norm" in s for s in steps)  # the norm before clipping
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.model.parameters() if p.grad is not None))
    assert norm.item() <= 0.05 * (1 + 1e-5)

"""Real short trainings of tiny models on CPU through the gin-configured Trainer and main()."""
import json
import math
import os

import gin
import pytest
import torch

from flexcore.checkpoint import CheckpointMismatchError
from flexcore.config import parse_config
from flexcore.engine.defaults import OutputDirError, default_argument_parser, main
from flexcore.engine.train_loop import HookBase, NonFiniteLossError
from flexcore.engine.trainer import Trainer
from flexcore.utils.logger import setup_logger

from conftest import TINY_PLUGIN

BASE = [
    "Data.dataset = 'TinyShapes'",
    "build_model.backbone = @TinyNet",
    "Data.batch_size = 16",   # 128 train samples: 8 iterations per epoch
    "Schedule.epochs = 2",
    "Solver.lr = 0.01",
    "Schedule.log_period = 1",    # every iteration's raw loss in metrics.json
    "Outputs.tensorboard = False",
    "Outputs.kernel_report = False",  # matplotlib PNGs: seconds per run, checked in tests/analysis
]


def _trainer(output_dir, bindings=(), **kwargs):
    gin.clear_config()
    parse_config([], BASE + list(bindings), plugins=[TINY_PLUGIN], finalize=False)
    setup_logger(str(output_dir))
    return Trainer(str(output_dir), **kwargs)


def _metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def _losses(output_dir):
    return {m["iteration"]: m["loss"] for m in _metrics(output_dir) if "loss" in m}


class _Crash(HookBase):
    """Simulates a killed job: raises after a given iteration."""

    def __init__(self, at):
        self.at = at

    def after_step(self):
        if self.trainer.iter == self.at:
            raise KeyboardInterrupt(f"simulated crash at iteration {self.at}")


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, tiny_plugin):
    # Dropout draws from the global RNG: exact only if checkpoints restore RNG states.
    bindings = ["TinyNet.dropout = 0.3", "Schedule.epochs = 3", "Solver.lr_schedule = @Cosine",
                "Cosine.warmup_epochs = 1"]
    full = _trainer(tmp_path / "full", bindings)
    full.resume_or_load(resume=False)
    full.train()

    crashed = _trainer(tmp_path / "resumed", bindings, extra_hooks=[lambda: _Crash(at=12)])
    crashed.resume_or_load(resume=False)
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert not (tmp_path / "resumed" / "model_final.pth").exists()
    assert (tmp_path / "resumed" / "last_checkpoint").read_text() == "model_0000007.pth"

    resumed = _trainer(tmp_path / "resumed", bindings)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 8
    resumed.train()

    expected, got = _losses(tmp_path / "full"), _losses(tmp_path / "resumed")
    assert sorted(got) == list(range(24))  # lines 8..12 of the crashed run were replaced
    assert got == expected  # bitwise: same floats
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results["test_accuracy_final_model"] == full.results["test_accuracy_final_model"]
    # the summary covers the whole run: both sessions' time, all iterations
    assert resumed.results["iterations"] == 24 and resumed.results["resumed_at_iteration"] == 8
    assert resumed.results["wall_time_s"] > resumed.results["session_wall_time_s"] > 0


def test_same_metrics_for_any_num_workers(tmp_path, tiny_plugin):
    # Augmented real data and dropout: both random streams must follow the seed alone.
    bindings = ["Data.dataset = 'Digits'", "Digits.augment = 'resnet'", "TinyNet.dropout = 0.3",
                "Schedule.epochs = 0", "Schedule.max_iter = 4", "Data.val_split = None", "Data.test_split = None"]
    runs = {}
    for workers in (0, 2):  # (another seed giving other batches: tests/data/test_samplers.py)
        trainer = _trainer(tmp_path / str(workers), bindings + [f"Data.num_workers = {workers}"])
        trainer.resume_or_load(resume=False)
        trainer.train()
        runs[workers] = _losses(tmp_path / str(workers))
    assert runs[0] == runs[2] and sorted(runs[0]) == [0, 1, 2, 3]


@pytest.mark.parametrize("binding,match", [
    ("Data.batch_size = 0", "Data.batch_size must be an integer >= 1, got 0"),
    ("Data.eval_batch_size = -4", "Data.eval_batch_size must be an integer >= 1"),
    ("Schedule.epochs = 1.5", "Schedule.epochs must be an integer >= 0, got 1.5"),
    ("Data.num_workers = -1", "Data.num_workers"),
    ("Solver.grad_clip = -1.0", "Solver.grad_clip must be a number >= 0"),
    ("Solver.grad_clip_type = 'l2'", "Solver.grad_clip_type must be 'norm' or 'value'"),
    ("Runtime.num_threads = 0", "Runtime.num_threads must be an integer >= 1"),
    ("Checkpoints.max_to_keep = 0", "Checkpoints.max_to_keep must be an integer >= 1"),
])
def test_bad_trainer_arguments_name_the_binding(tmp_path, tiny_plugin, binding, match):
    with pytest.raises(ValueError, match=match):
        _trainer(tmp_path, [binding])


def test_outputs_eval_and_summary(tmp_path, tiny_plugin):
    trainer = _trainer(tmp_path, ["Solver.regularizers = {'kernel_norm': @LnLoss}", "LnLoss.weight = 1e-3",
                                  "build_param_groups.mask_lr_factor = 0.1"])
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    for name in ("metrics.json", "last_checkpoint", "model_final.pth", "model_best.pth", "summary.json", "log.txt"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    metrics = _metrics(tmp_path)
    first = metrics[0]
    assert first["iteration"] == 0 and first["epoch"] == 0.125
    assert first["total_loss"] == pytest.approx(first["loss"] + first["reg/kernel_norm"])
    assert first["lr/mask"] == pytest.approx(0.1 * first["lr"])
    assert "kernel_size/body.0/0" in first and "train/accuracy" in first
    vals = [m for m in metrics if "val/accuracy" in m]
    assert [m["iteration"] for m in vals] == [7, 15]
    assert {"test/accuracy", "test/top5", "test/loss"}.isdisjoint(vals[0])
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary == results
    assert summary["parameters"] == sum(p.numel() for p in trainer.model.parameters())
    assert summary["best_val_accuracy"] == max(m["val/accuracy"] for m in vals)
    assert 0 <= summary["test_accuracy_final_model"] <= 100 and summary["train_samples_per_s"] > 0
    assert "test_accuracy_best_model" in summary


def test_nan_loss_stops_and_names_the_last_good_checkpoint(tmp_path, tiny_plugin):
    class Bomb:
        """A regulariser that turns NaN at its 11th call."""

        calls = 0

        def __call__(self, model):
            Bomb.calls += 1
            return torch.tensor(float("nan") if Bomb.calls > 10 else 0.0)

    trainer = _trainer(tmp_path, regularizers={"bomb": Bomb})
    trainer.resume_or_load(resume=False)
    before = (tmp_path / "model_0000007.pth")
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    text = str(info.value)
    assert info.value.iteration == 10
    assert "iteration 10" in text and "reg/bomb=nan" in text
    assert str(before) in text and "nothing was overwritten" in text
    assert not (tmp_path / "model_final.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000007.pth"
    assert max(_losses(tmp_path)) == 9


def test_regression_task_selects_on_loss(tmp_path, tiny_plugin):
    trainer = _trainer(tmp_path, ["Data.dataset = 'TinySum'", "Schedule.epochs = 2"])
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert trainer.task.mode == "min" and math.isfinite(results["best_val_loss"])
    assert "test_loss_final_model" in results
    assert any("val/mse" in m for m in _metrics(tmp_path))


def test_pretrained_init_strict_and_non_strict(tmp_path, tiny_plugin):
    source = _trainer(tmp_path / "src", ["TinyNet.width = 8"])
    source.checkpointer.save("pretrained")
    path = str(tmp_path / "src" / "pretrained.pth")
    wider = _trainer(tmp_path / "dst", ["TinyNet.width = 6"], init_weights=path)
    with pytest.raises(CheckpointMismatchError, match="shape differs"):
        wider.resume_or_load(resume=False)
    partial = _trainer(tmp_path / "dst2", ["TinyNet.width = 6"], init_weights=path, init_strict=False)
    partial.resume_or_load(resume=False)
    src, dst = source.model.state_dict(), partial.model.state_dict()
    same = [k for k in src if k in dst and src[k].shape == dst[k].shape and src[k].is_floating_point()]
    assert same and all(torch.equal(src[k], dst[k]) for k in same)  # what fits was loaded
    assert not torch.equal(dst["head.weight"], src["head.weight"][:, :6])  # the rest kept its init


def _args(tmp_path, *extra):
    gin_file = tmp_path / "tiny.gin"
    gin_file.write_text("\n".join(BASE + ["Checkpoints.max_to_keep = 1"]) + "\n")
    return default_argument_parser().parse_args(
        ["--plugin", TINY_PLUGIN, "--config-file", str(gin_file), "--output-dir", str(tmp_path / "run"), *extra]
    )


def test_main_train_refuse_resume_eval_only_profile(tmp_path, tiny_plugin):
    results = main(_args(tmp_path))
    run = tmp_path / "run"
    assert {"config.gin", "operative_config.gin"} <= set(os.listdir(run))
    assert "Schedule.epochs = 2" in (run / "operative_config.gin").read_text()
    assert sorted(f for f in os.listdir(run) if f.startswith("model_0")) == ["model_0000007.pth"]  # max_to_keep 1
    gin.clear_config()
    with pytest.raises(OutputDirError, match="already holds a run .*--resume"):
        main(_args(tmp_path))
    gin.clear_config()
    summary, metrics = (run / "summary.json").read_text(), (run / "metrics.json").read_text()
    again = main(_args(tmp_path, "--resume"))  # finished run: nothing left to train, nothing rewritten
    assert again == json.loads(summary) and again["iterations"] == 16
    assert (run / "summary.json").read_text() == summary and (run / "metrics.json").read_text() == metrics
    gin.clear_config()
    evaluated = main(_args(tmp_path, "--eval-only"))
    assert evaluated["test"]["accuracy"] == pytest.approx(results["test_accuracy_final_model"])
    assert json.load(open(run / "eval_results.json"))["weights"].endswith("model_final.pth")
    gin.clear_config()
    best = main(_args(tmp_path, "--eval-only", "--weights", str(run / "model_best.pth")))
    assert best["val"]["accuracy"] == pytest.approx(results["best_val_accuracy"])
    gin.clear_config()
    profiled = main(_args(tmp_path, "--profile", "2", "--output-dir", str(tmp_path / "prof")))
    assert "aten::" in profiled["profile"]
    assert {"trace.json", "top_ops.txt"} <= set(os.listdir(tmp_path / "prof" / "profile"))
    assert not (tmp_path / "prof" / "last_checkpoint").exists()

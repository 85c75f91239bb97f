"""Sweep grids: parsing, run names, local sequential runs and their summary."""
import json
import os

import pytest

from flexcore.config import ConfigError
from flexcore.engine.defaults import main
from flexcore.engine.launch import LaunchError, launch
from flexcore.engine.sweep import parse_sweep, read_run_results, sweep_runs
from launch_fixtures import read_metrics, train_args


def test_parse_sweep_splits_values_outside_brackets_and_quotes():
    axes = parse_sweep(["A.b=16, 32", "Trainer.milestones=[10,20],[30,40]", "C.name='a,b','c'", "seed=0"])
    assert axes == [
        ("A.b", ["16", "32"]),
        ("Trainer.milestones", ["[10,20]", "[30,40]"]),
        ("C.name", ["'a,b'", "'c'"]),
        ("seed", ["0"]),
    ]


@pytest.mark.parametrize("spec, message", [
    ("A.b", "expected BINDING=V1,V2"),
    ("A.b=", "expected BINDING=V1,V2"),
    ("A.b=1,,2", "expected BINDING=V1,V2"),
    ("=1,2", "expected BINDING=V1,V2"),
])
def test_malformed_sweep_is_explained(spec, message):
    with pytest.raises(LaunchError, match=message):
        parse_sweep([spec])


def test_same_key_twice_is_refused():
    with pytest.raises(LaunchError, match="twice"):
        parse_sweep(["A.b=1", "A.b=2"])


def test_grid_is_cartesian_with_safe_unique_names(tmp_path):
    axes = parse_sweep(["MAGNet.hidden_channels=16,32", "SIREN.hidden_channels=8", "seed=0,1,2"])
    runs = sweep_runs(axes, str(tmp_path))
    assert len(runs) == 6
    # The short name would collide between MAGNet and SIREN, so both keep their full key.
    assert runs[0].name == "MAGNet.hidden_channels-16_SIREN.hidden_channels-8_seed-0"
    assert runs[5].bindings == ["MAGNet.hidden_channels = 32", "SIREN.hidden_channels = 8", "seed = 2"]
    assert runs[5].output_dir == os.path.join(str(tmp_path), runs[5].name)
    odd = sweep_runs(parse_sweep(["A.path='x/y','x y'", "B.v=" + ",".join(["'" + "z" * 80 + "'"])]), str(tmp_path))
    names = [r.name for r in odd]
    assert len(set(names)) == 2 and all(len(n) <= 120 for n in names)
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_") for n in names)


def test_run_results_keep_final_values_best_metrics_and_the_summary(tmp_path):
    lines = [
        {"iteration": 10, "loss": 2.0, "lr": 0.1, "val/accuracy": 50.0},
        {"iteration": 20, "loss": 1.0, "lr": 0.1, "val/accuracy": 70.0},
        {"iteration": 30, "loss": 1.5, "lr": 0.01, "val/accuracy": 60.0},
    ]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"iteration": 4')
    (tmp_path / "summary.json").write_text(json.dumps({"best_val_accuracy": 70.0}))
    assert read_run_results(str(tmp_path)) == {
        "final": {"iteration": 30, "loss": 1.5, "lr": 0.01, "val/accuracy": 60.0},
        "best": {"loss": 1.0, "val/accuracy": 70.0},
        "summary": {"best_val_accuracy": 70.0},
    }


def test_local_sweep_runs_each_point_and_summarizes_even_when_one_fails(tmp_path, capsys):
    args = train_args(tmp_path, "sweep", "--sweep", "Solver.lr=0.01,0.001", "--sweep", "FailOnRank.rank=-1,0",
                      gin=["Trainer.extra_hooks = [@FailOnRank]"])
    with pytest.raises(LaunchError, match="2 of 4 sweep runs failed: lr-0.01_rank-0, lr-0.001_rank-0"):
        launch(main, args)
    sweep_dir = tmp_path / "sweep"
    rows = {r["run"]: r for r in json.loads((sweep_dir / "sweep_summary.json").read_text())}
    assert list(rows) == ["lr-0.01_rank--1", "lr-0.01_rank-0", "lr-0.001_rank--1", "lr-0.001_rank-0"]
    done, failed = rows["lr-0.001_rank--1"], rows["lr-0.001_rank-0"]
    assert done["status"] == "completed"
    assert failed["status"] == "failed: RuntimeError: FailOnRank: rank 0 fails at iteration 1 on purpose"
    # Results come from each run's own files; each run parsed its own bindings.
    assert done["summary"] == json.loads((sweep_dir / "lr-0.001_rank--1" / "summary.json").read_text())
    assert done["final"]["loss"] == [m for m in read_metrics(sweep_dir / "lr-0.001_rank--1") if "loss" in m][-1]["loss"]
    assert done["summary"]["test_loss_final_model"] != rows["lr-0.01_rank--1"]["summary"]["test_loss_final_model"]
    assert failed["summary"] == {} and failed["final"]["iteration"] == 1
    printed = capsys.readouterr().out
    assert "Sweep summary" in printed and "| lr-0.001_rank--1 " in printed and "test_loss_final_model" in printed
    assert (sweep_dir / "sweep_summary.md").read_text().count("| lr-") == 4


@pytest.mark.parametrize("binding, message", [
    ("Solver.lrr=0.1,0.2", "Did you mean 'lr'"),  # gin's own check
    ("Trainer.lrr=0.1,0.2", r"Trainer.lrr = 0.1 .*unknown setting 'lrr'. Did you mean Solver.lr\?"),  # a flat name
])
def test_bad_sweep_binding_fails_before_any_run(tmp_path, binding, message):
    args = train_args(tmp_path, "sweep", "--sweep", binding, "--launcher", "slurm")
    with pytest.raises(ConfigError, match=message):
        launch(main, args)
    assert not (tmp_path / "sweep").exists()

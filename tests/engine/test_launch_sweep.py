"""Sweep grids: parsing, run names, local sequential runs and their summary."""
import json
import os

import pytest

from flexcore.config import ConfigError
from flexcore.engine.defaults import default_argument_parser
from flexcore.engine.launch import LaunchError, launch
from flexcore.engine.sweep import parse_sweep, summarize_metrics, sweep_runs
from launch_fixtures import tiny_main


def tiny_args(tmp_path, *flags):
    config = tmp_path / "tiny.gin"
    config.write_text("tiny_experiment.epochs = 2\n")
    argv = ["--config-file", str(config), "--output-dir", str(tmp_path / "sweep"), *flags]
    return default_argument_parser().parse_args(argv)


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


def test_summarize_metrics_keeps_final_values_and_best_accuracies(tmp_path):
    lines = [
        {"iteration": 10, "loss": 2.0, "lr": 0.1, "val/top1_acc": 0.5},
        {"iteration": 20, "loss": 1.0, "lr": 0.1, "val/top1_acc": 0.7},
        {"iteration": 30, "loss": 1.5, "lr": 0.01, "val/top1_acc": 0.6},
    ]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"iteration": 4')
    summary = summarize_metrics(str(tmp_path))
    assert summary == {"final": {"iteration": 30, "loss": 1.5, "val/top1_acc": 0.6}, "best": {"val/top1_acc": 0.7}}


def test_local_sweep_runs_each_point_and_summarizes_even_when_one_fails(tmp_path, capsys):
    args = tiny_args(tmp_path, "--sweep", "tiny_experiment.hidden=4,8", "--sweep", "tiny_experiment.fail_on_rank=-1,0")
    with pytest.raises(LaunchError, match="2 of 4 sweep runs failed: hidden-4_fail_on_rank-0, hidden-8_fail_on_rank-0"):
        launch(tiny_main, args)
    sweep_dir = tmp_path / "sweep"
    rows = json.loads((sweep_dir / "sweep_summary.json").read_text())
    by_name = {r["run"]: r for r in rows}
    assert by_name["hidden-8_fail_on_rank--1"]["status"] == "completed"
    assert by_name["hidden-8_fail_on_rank-0"]["status"].startswith("failed: ValueError: tiny_main failed on purpose")
    with open(sweep_dir / "hidden-8_fail_on_rank--1" / "metrics.json") as f:
        last = [json.loads(line) for line in f][-1]
    assert by_name["hidden-8_fail_on_rank--1"]["final"] == {"epoch": 1, "loss": last["loss"]}
    # Each run parsed its own bindings: the two completed runs trained different models.
    assert by_name["hidden-4_fail_on_rank--1"]["final"]["loss"] != last["loss"]
    printed = capsys.readouterr().out
    assert "Sweep summary" in printed and "| hidden-4_fail_on_rank--1 |" in printed
    assert (sweep_dir / "sweep_summary.md").read_text().count("| hidden-") == 4


def test_bad_sweep_binding_fails_before_any_run(tmp_path):
    args = tiny_args(tmp_path, "--sweep", "tiny_experimnt.hidden=4,8", "--launcher", "slurm")
    with pytest.raises(ConfigError, match="tiny_experiment"):
        launch(tiny_main, args)
    assert not (tmp_path / "sweep").exists()

"""Messages for refused checkpoints, damaged run files and settings, and untrusted sweep folders."""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from flexcore.checkpoint import Checkpointer, CheckpointError
from flexcore.data.base import ENV_ROOT, MissingDatasetError, dataset_dir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _RunsShell:
    """Unpickles into ``os.system(command)``: what an attacker puts into a pickle."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_checkpoint(path, marker):
    torch.save({"model": nn.Linear(2, 2).state_dict(), "extra": _RunsShell(f"touch {marker}")}, path)


def test_blocked_global_is_refused_by_safe_loading_not_called_corrupt(tmp_path):
    _evil_checkpoint(tmp_path / "evil.pth", tmp_path / "ran")
    with pytest.raises(CheckpointError) as info:
        Checkpointer(nn.Linear(2, 2)).load(str(tmp_path / "evil.pth"))
    message = str(info.value)
    assert message.startswith(f"Safe loading refused {tmp_path / 'evil.pth'}") and "posix.system" in message
    assert "corrupt" not in message and "--unsafe-load" in message
    assert not (tmp_path / "ran").exists()


def test_analyze_model_reports_a_refused_checkpoint_without_traceback(tmp_path):
    _evil_checkpoint(tmp_path / "evil.pth", tmp_path / "ran")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "analyze_model.py"), "--config-file", "quick/digits_flexnet.gin",
         "--weights", str(tmp_path / "evil.pth"), "--tasks", "params", "--output", str(tmp_path / "analysis")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "Safe loading refused" in result.stderr and "evil.pth" in result.stderr
    assert not (tmp_path / "ran").exists()


def test_empty_last_checkpoint_names_the_file(tmp_path):
    (tmp_path / "last_checkpoint").write_text("")
    with pytest.raises(CheckpointError, match=r"last_checkpoint is empty") as info:
        Checkpointer(nn.Linear(2, 2), str(tmp_path)).get_checkpoint_file()
    assert str(tmp_path / "last_checkpoint") in str(info.value)


def test_empty_datasets_variable_counts_as_unset(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_ROOT, "")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDatasetError) as info:
        dataset_dir(None, "Toy", "toy", ["train.bin"], "nowhere")
    message = str(info.value)
    assert repr(str(tmp_path / "datasets")) in message
    assert f"{str(tmp_path)!r} does not exist" not in message


def _sweep_folder(tmp_path, job_id="4242_0"):
    sweep = tmp_path / "sweep"
    run_dir = sweep / "lr-0.1"
    (sweep / "slurm").mkdir(parents=True)
    run_dir.mkdir()
    manifest = {"axes": [["Solver.lr", ["0.1"]]], "launcher": "slurm",
                "runs": [{"name": "lr-0.1", "bindings": ["Solver.lr = 0.1"], "values": {"Solver.lr": "0.1"},
                          "output_dir": str(run_dir), "job_id": job_id, "status": None}]}
    (sweep / "sweep.json").write_text(json.dumps(manifest))
    return sweep, run_dir


def _summarize(sweep):
    return subprocess.run([sys.executable, "-m", "flexcore.engine.sweep", str(sweep)], capture_output=True, text=True,
                          timeout=120)


def test_sweep_summary_never_unpickles_result_files(tmp_path):
    sweep, run_dir = _sweep_folder(tmp_path)
    marker = tmp_path / "pickle_ran"
    with open(sweep / "slurm" / "4242_0_0_result.pkl", "wb") as f:
        pickle.dump(("success", _RunsShell(f"touch {marker}")), f)
    result = _summarize(sweep)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    rows = json.loads((sweep / "sweep_summary.json").read_text())
    assert rows[0]["status"] == "no result (running, cancelled or killed)"
    # Status and results come from the run's own JSON files.
    (run_dir / "summary.json").write_text(json.dumps({"test_accuracy_final_model": 97.5}))
    (run_dir / "metrics.json").write_text(json.dumps({"iteration": 9, "loss": 0.25}) + "\n")
    assert _summarize(sweep).returncode == 0 and not marker.exists()
    row = json.loads((sweep / "sweep_summary.json").read_text())[0]
    assert row["status"] == "completed" and row["summary"]["test_accuracy_final_model"] == 97.5
    assert row["final"]["loss"] == 0.25


def test_sweep_failure_is_read_from_the_job_log(tmp_path):
    sweep, _ = _sweep_folder(tmp_path)
    (sweep / "slurm" / "4242_0_0_log.err").write_text(
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: lr too high\n")
    assert _summarize(sweep).returncode == 0
    status = json.loads((sweep / "sweep_summary.json").read_text())[0]["status"]
    assert status.startswith("failed: ValueError: lr too high")

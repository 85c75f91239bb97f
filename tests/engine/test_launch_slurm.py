"""SLURM launcher against a real single-node cluster (.ci/start-local-slurm.sh starts one)."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from flexcore.engine.defaults import default_argument_parser
from flexcore.engine.launch import LaunchError, launch
from flexcore.engine.slurm import wait_for_jobs
from launch_fixtures import tiny_main

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_NET = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "train_net.py")
JOB_TIMEOUT_S = 240  # a tiny job takes ~10-30 s here; nothing may hang a test run


def tiny_args(tmp_path, name, *flags, gin=()):
    config = tmp_path / "tiny.gin"
    config.write_text("tiny_experiment.epochs = 2\ntiny_experiment.batch_size = 8\n")
    argv = ["--config-file", str(config), "--output-dir", str(tmp_path / name), *flags]
    for binding in gin:
        argv += ["--gin", binding]
    return default_argument_parser().parse_args(argv)


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def slurm_ids(under=None):
    """Queued/running job ids, optionally only those whose batch script lies under a folder."""
    out = subprocess.run(["squeue", "-h", "-o", "%A|%o"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
    return {job for job, command in rows if under is None or command.startswith(str(under))}


@pytest.fixture
def slurm(monkeypatch, tmp_path):
    """The job's Python finds the test helpers; whatever the test left queued is cancelled."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    yield
    leftover = slurm_ids(under=tmp_path)  # only this test's jobs: other runs may share the cluster
    if leftover:
        subprocess.run(["scancel", *sorted(leftover)], check=False)


def poll(condition, timeout_s, what, every_s=0.5):
    end = time.time() + timeout_s
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


# A stuck queue fails the test (its jobs are cancelled) instead of hanging the suite.
slurm_test = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(2 * JOB_TIMEOUT_S)]


def with_marks(marks):
    def decorate(fn):
        for mark in marks:
            fn = mark(fn)
        return fn
    return decorate


@with_marks(slurm_test)
def test_one_job_runs_to_completion_with_its_metrics(tmp_path, slurm, capsys):
    args = tiny_args(tmp_path, "single", "--launcher", "slurm", "--partition", "debug", "--time", "5", "--wait")
    result = launch(tiny_main, args)
    printed = capsys.readouterr().out
    assert result["world_size"] == 1
    assert [m["epoch"] for m in read_metrics(tmp_path / "single")] == [0, 1]
    job_id = printed.split("Submitted SLURM job ", 1)[1].split()[0]
    log = tmp_path / "single" / "slurm" / f"{job_id}_0_log.out"
    assert f"log:        {log}" in printed and log.exists()  # job folder inside the output dir
    assert "tiny: epoch 1 loss" in printed  # --wait streamed the job's log
    assert f"SLURM job {job_id} completed" in printed


@with_marks(slurm_test)
def test_two_task_ddp_job_matches_a_local_run(tmp_path, slurm):
    local = launch(tiny_main, tiny_args(tmp_path, "local"))
    args = tiny_args(tmp_path, "ddp", "--launcher", "slurm", "--tasks-per-node", "2", "--time", "5", "--wait")
    result = launch(tiny_main, args)
    assert result["world_size"] == 2 and result["rank"] == 0
    for name, value in local["params"].items():
        torch.testing.assert_close(result["params"][name], value, rtol=0, atol=1e-6)
    assert (tmp_path / "ddp" / "slurm").is_dir() and not (tmp_path / "ddp" / "log.txt.rank2").exists()


@with_marks(slurm_test)
def test_sweep_is_one_job_array_with_a_summary(tmp_path, slurm, capsys):
    args = tiny_args(
        tmp_path, "sweep", "--launcher", "slurm", "--time", "5", "--wait", "--array-parallelism", "2",
        "--sweep", "tiny_experiment.hidden=4,8", "--sweep", "tiny_experiment.seed=0,1",
    )
    rows = launch(tiny_main, args)
    sweep_dir = tmp_path / "sweep"
    names = ["hidden-4_seed-0", "hidden-4_seed-1", "hidden-8_seed-0", "hidden-8_seed-1"]
    assert [r["run"] for r in rows] == names
    assert len({r["job_id"].split("_")[0] for r in rows}) == 1  # one array
    scripts = [p.read_text() for p in (sweep_dir / "slurm").glob("*_submission.sh")]
    assert sum("#SBATCH --array=0-3%2" in text for text in scripts) == 1  # + the summary job's script
    for row, name in zip(rows, names):
        assert row["status"] == "completed"
        assert row["final"]["epoch"] == 1
        assert row["final"]["loss"] == read_metrics(sweep_dir / name)[-1]["loss"]
    summary = (sweep_dir / "sweep_summary.md").read_text()
    assert "| run " in summary and "final loss" in summary and all(name in summary for name in names)
    assert json.loads((sweep_dir / "sweep_summary.json").read_text()) == json.loads(json.dumps(rows))
    assert "Sweep summary" in capsys.readouterr().out


@with_marks(slurm_test)
def test_preempted_job_requeues_and_resumes_without_losing_an_epoch(tmp_path, slurm):
    epochs = 4
    uninterrupted = launch(tiny_main, tiny_args(tmp_path, "reference", gin=[f"tiny_experiment.epochs = {epochs}"]))
    args = tiny_args(tmp_path, "preempt", "--launcher", "slurm", "--time", "5",
                     gin=[f"tiny_experiment.epochs = {epochs}", "tiny_experiment.epoch_sleep_s = 2"])
    job = launch(tiny_main, args)
    out = tmp_path / "preempt"
    poll(lambda: (out / "metrics.json").exists() and len(read_metrics(out)) >= 1, JOB_TIMEOUT_S, "the first epoch")
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)  # what SLURM sends on preemption/time-out

    def requeued_and_held():
        state = subprocess.run(["squeue", "-h", "-j", job.job_id, "-o", "%T %r"], capture_output=True, text=True).stdout
        return state.startswith("PENDING")

    poll(requeued_and_held, 60, "the requeued job to be pending")
    subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], check=True)  # skip the ~120 s hold
    wait_for_jobs([job], poll_s=1, state_poll_s=5, timeout_s=JOB_TIMEOUT_S)
    assert job.exception() is None
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == list(range(epochs))  # every epoch once: none lost, none repeated
    assert len({m["pid"] for m in metrics}) == 2  # two starts of the job
    assert 1 <= [m["pid"] for m in metrics].index(metrics[-1]["pid"]) < epochs
    log = (out / "slurm" / f"{job.job_id}_0_log.out").read_text()
    assert "requeued to resume from the last complete checkpoint" in log
    # The resumed run ends where the uninterrupted one does.
    assert job.result()["params"].keys() == uninterrupted["params"].keys()
    for name, value in uninterrupted["params"].items():
        torch.testing.assert_close(job.result()["params"][name], value, rtol=0, atol=1e-6)


@with_marks(slurm_test)
def test_failing_job_shows_its_error_and_log_path(tmp_path, slurm):
    """Rank 1 of a 2-task DDP job raises: rank 0 must not wait for it forever."""
    script = tmp_path / "run_tiny.py"
    script.write_text(textwrap.dedent(
        """
        import sys
        from flexcore.engine import defaults
        from launch_fixtures import tiny_main
        defaults.main = tiny_main
        if __name__ == "__main__":
            sys.exit(defaults.cli_entry())
        """
    ))
    (tmp_path / "tiny.gin").write_text("tiny_experiment.fail_on_rank = 1\n")
    result = subprocess.run(
        [sys.executable, str(script), "--config-file", "tiny.gin", "--output-dir", "out",
         "--launcher", "slurm", "--tasks-per-node", "2", "--time", "5", "--wait"],
        cwd=tmp_path, capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
    )
    assert result.returncode == 1
    assert "Launch error: SLURM job" in result.stderr and "failed (task 1)" in result.stderr
    assert "ValueError: tiny_main failed on purpose on rank 1" in result.stderr
    log = next((tmp_path / "out" / "slurm").glob("*_1_log.out"))
    assert f"Log: {log}" in result.stderr


def test_slurm_launcher_without_sbatch_says_how_to_run_locally(tmp_path):
    """A machine without SLURM: a clear message and exit status 1, no traceback."""
    (tmp_path / "tiny.gin").write_text("")
    bin_dir = os.path.dirname(sys.executable)  # python only: no sbatch on this PATH
    result = subprocess.run(
        [sys.executable, TRAIN_NET, "--config-file", "tiny.gin", "--launcher", "slurm"],
        cwd=tmp_path, env=dict(os.environ, PATH=bin_dir), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "--launcher slurm needs SLURM's `sbatch`" in result.stderr
    assert "drop --launcher slurm" in result.stderr and "--num-processes N" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()

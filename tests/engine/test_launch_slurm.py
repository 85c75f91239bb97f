"""SLURM launcher against a real single-node cluster (.ci/start-local-slurm.sh starts one)."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from flexcore.engine.defaults import main
from flexcore.engine.launch import LaunchError, launch
from flexcore.engine.slurm import wait_for_jobs
from launch_fixtures import TRAIN_NET, assert_same_weights, final_weights, read_metrics, train_args, train_argv

JOB_TIMEOUT_S = 240  # a tiny job takes ~10-30 s here; a stuck queue must not hang the suite
# A stuck queue fails the test (its jobs are cancelled) instead of hanging the suite.
slurm_test = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(2 * JOB_TIMEOUT_S)]


def with_marks(marks):
    def decorate(fn):
        for mark in marks:
            fn = mark(fn)
        return fn
    return decorate


def slurm_ids(under):
    """Queued/running jobs whose batch script lies under ``under`` (the cluster is shared)."""
    out = subprocess.run(["squeue", "-h", "-o", "%A|%o"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
    return {job for job, command in rows if command.startswith(str(under))}


@pytest.fixture
def slurm(tmp_path):
    """Whatever the test left queued is cancelled (only its own jobs)."""
    yield
    leftover = slurm_ids(tmp_path)
    if leftover:
        subprocess.run(["scancel", *sorted(leftover)], check=False)


def run_cli(cwd, argv, env=None):
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, TRAIN_NET, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S)


def poll(condition, timeout_s, what, every_s=0.2):
    end = time.time() + timeout_s
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@with_marks(slurm_test)
def test_one_job_runs_to_completion_with_its_metrics(tmp_path, slurm):
    result = run_cli(tmp_path, train_argv(tmp_path, "single", "--launcher", "slurm", "--partition", "debug",
                                          "--time", "5", "--wait"))
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"Submitted SLURM job (\d+)", result.stdout).group(1)
    out = tmp_path / "single"
    log = out / "slurm" / f"{job_id}_0_log.out"  # the job folder lies inside the output dir
    assert f"log:        {log}" in result.stdout and log.exists()
    assert f"Summary of {out}" in result.stdout  # --wait streamed the job's log
    assert f"SLURM job {job_id} completed" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 8 and "test_loss_final_model" in summary
    assert {m["iteration"] for m in read_metrics(out)} >= set(range(8))


@with_marks(slurm_test)
def test_two_task_ddp_job_matches_a_local_run(tmp_path, slurm):
    launch(main, train_args(tmp_path, "local"))
    result = launch(main, train_args(tmp_path, "ddp", "--launcher", "slurm", "--tasks-per-node", "2",
                                     "--time", "5", "--wait"))
    assert "test_loss_final_model" in result  # rank 0's return value came back
    assert_same_weights(final_weights(tmp_path / "local"), final_weights(tmp_path / "ddp"), atol=1e-6)
    with open(tmp_path / "ddp" / "log.txt") as f:
        assert "global batch 16 = 8 per process x 2" in f.read()
    assert sorted(p.name for p in (tmp_path / "ddp").glob("log.txt*")) == ["log.txt", "log.txt.rank1"]


@with_marks(slurm_test)
def test_sweep_is_one_job_array_with_a_summary(tmp_path, slurm, capsys):
    args = train_args(tmp_path, "sweep", "--launcher", "slurm", "--time", "5", "--wait", "--array-parallelism", "2",
                      "--sweep", "Solver.lr=0.01,0.001", "--sweep", "seed=0,1")
    rows = launch(main, args)
    sweep_dir = tmp_path / "sweep"
    names = ["lr-0.01_seed-0", "lr-0.01_seed-1", "lr-0.001_seed-0", "lr-0.001_seed-1"]
    assert [r["run"] for r in rows] == names
    assert len({r["job_id"].split("_")[0] for r in rows}) == 1  # one array
    scripts = [p.read_text() for p in (sweep_dir / "slurm").glob("*_submission.sh")]
    assert sum("#SBATCH --array=0-3%2" in text for text in scripts) == 1  # + the summary job's script
    for row, name in zip(rows, names):
        assert row["status"] == "completed"
        assert row["summary"] == json.loads((sweep_dir / name / "summary.json").read_text())
    assert len({r["summary"]["test_loss_final_model"] for r in rows}) == 4  # four different runs
    table = (sweep_dir / "sweep_summary.md").read_text()
    assert "test_loss_final_model" in table and all(f"| {name} " in table for name in names)
    assert json.loads((sweep_dir / "sweep_summary.json").read_text()) == json.loads(json.dumps(rows))
    assert "Sweep summary" in capsys.readouterr().out


@with_marks(slurm_test)
@pytest.mark.parametrize("interrupt, slow", [
    # What SLURM sends on preemption/time-out: the job checkpoints and requeues itself.
    (["scancel", "--signal=USR2"], ["SlowSteps.seconds = 0.5"]),
    # SLURM requeues the job itself (admin, node failure): SIGTERM, which submitit ignores, then
    # SIGKILL after KillWait (30 s here), so the first start must outlive that to be cut short.
    (["scontrol", "requeue"], ["SlowSteps.seconds = 3.5", "SlowSteps.first_start_only = True"]),
], ids=["usr2", "scontrol-requeue"])
def test_preempted_job_requeues_and_resumes_without_losing_an_epoch(tmp_path, slurm, interrupt, slow):
    gin = ["Schedule.epochs = 4"]
    launch(main, train_args(tmp_path, "reference", gin=gin))
    job = launch(main, train_args(tmp_path, "preempt", "--launcher", "slurm", "--time", "5",
                                  gin=gin + ["Trainer.extra_hooks = [@SlowSteps]", *slow]))
    out = tmp_path / "preempt"
    poll(lambda: (out / "last_checkpoint").exists(), JOB_TIMEOUT_S, "the first checkpoint")
    checkpoint = (out / "last_checkpoint").read_text().strip()
    subprocess.run([*interrupt, job.job_id], check=True)

    def held():
        state = subprocess.run(["squeue", "-h", "-j", job.job_id, "-o", "%T"], capture_output=True, text=True).stdout
        return state.strip() == "PENDING"

    poll(held, 60, "the requeued job to be pending")
    subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], check=True)  # skip the ~120 s hold
    wait_for_jobs([job], poll_s=1, state_poll_s=5, timeout_s=JOB_TIMEOUT_S)
    assert job.exception() is None
    submitit_log = (out / "slurm" / f"{job.job_id}_0_log.out").read_text()
    if interrupt[0] == "scancel":
        assert "requeued to resume from the last complete checkpoint" in submitit_log
    trainer_log = (out / "log.txt").read_text()
    resumed = re.search(r"Resumed from \S+/(model_(\d+)\.pth): continuing at iteration (\d+)", trainer_log)
    assert resumed, trainer_log
    # It resumed from the checkpoint that was complete when the signal came (or a later one).
    assert int(resumed.group(2)) >= int(checkpoint[len("model_"):-len(".pth")])
    assert int(resumed.group(3)) == int(resumed.group(2)) + 1 < 16
    lines = [m["iteration"] for m in read_metrics(out) if "loss" in m]
    assert lines == list(range(16))  # every step logged once: nothing lost, nothing doubled
    # The requeued run ends exactly where the uninterrupted one does.
    assert_same_weights(final_weights(tmp_path / "reference"), final_weights(out), atol=1e-6)


@with_marks(slurm_test)
def test_failing_job_shows_its_error_and_log_path(tmp_path, slurm):
    """Rank 1 of a 2-task DDP job raises: reported with its traceback; rank 0 does not wait forever."""
    args = train_args(tmp_path, "out", "--launcher", "slurm", "--tasks-per-node", "2", "--time", "5", "--wait",
                      gin=["Trainer.extra_hooks = [@FailOnRank]", "FailOnRank.rank = 1"])
    with pytest.raises(LaunchError) as info:  # the CLI prints it as "Launch error: ..." with exit 1
        launch(main, args)
    message = str(info.value)
    assert message.startswith("SLURM job") and "failed (task 1)" in message
    assert "launch_plugin.py" in message  # the failing task's own traceback
    assert "RuntimeError: FailOnRank: rank 1 fails at iteration 1 on purpose" in message
    log = next((tmp_path / "out" / "slurm").glob("*_1_log.out"))
    assert f"Log: {log}" in message


def test_slurm_launcher_without_sbatch_says_how_to_run_locally(tmp_path):
    """A machine without SLURM: a clear message and exit status 1, no traceback."""
    no_slurm = dict(os.environ, PATH=os.path.dirname(sys.executable))  # python only: no sbatch here
    result = run_cli(tmp_path, train_argv(tmp_path, "out", "--launcher", "slurm"), env=no_slurm)
    assert result.returncode == 1
    assert "--launcher slurm needs SLURM's `sbatch`" in result.stderr
    assert "drop --launcher slurm" in result.stderr and "--num-processes N" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slurm
def test_an_output_dir_holding_a_run_is_refused_before_submitting(tmp_path, slurm):
    """Not in the queue, minutes later: at once, with the way out (as a local run says)."""
    from flexcore.engine.defaults import OutputDirError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}\n")
    with pytest.raises(OutputDirError, match="--resume"):
        launch(main, train_args(tmp_path, "out", "--launcher", "slurm", "--time", "5"))
    assert not (tmp_path / "out" / "slurm").exists() and not slurm_ids(tmp_path)


@with_marks(slurm_test)
@pytest.mark.parametrize("flags, reason", [
    (["--partition", "no-such-partition"], "[Ii]nvalid partition"),
    (["--constraint", "no-such-feature"], "[Ii]nvalid feature"),
])
def test_sbatch_refusal_is_one_clear_error(tmp_path, slurm, flags, reason):
    with pytest.raises(LaunchError, match=f"sbatch refused the job: .*{reason}"):
        launch(main, train_args(tmp_path, "out", "--launcher", "slurm", *flags))


@with_marks(slurm_test)
def test_slurm_flags_reach_sbatch(tmp_path, slurm):
    """Every SLURM flag lands in the batch script and in the scheduler (a held job: nothing runs)."""
    job = launch(main, train_args(
        tmp_path, "flags", "--launcher", "slurm", "--partition", "debug", "--time", "7", "--nodes", "1",
        "--tasks-per-node", "2", "--cpus-per-task", "1", "--mem-gb", "1", "--account", "flexacct", "--qos", "normal",
        "--comment", "flexcore test", "--job-name", "flags-test", "--slurm-additional", "hold",
        "--slurm-additional", "mail-type=END", "--slurm-setup", "echo setup-ran"))
    script = (tmp_path / "flags" / "slurm" / f"{job.job_id}_submission.sh").read_text()
    for line in ["--partition=debug", "--time=7", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
                 "--mem=1GB", "--account=flexacct", "--qos=normal", "--comment='flexcore test'",
                 "--job-name=flags-test", "--mail-type=END"]:
        assert f"#SBATCH {line}\n" in script, line
    assert "#SBATCH --hold\n" in script and "\necho setup-ran\n" in script
    assert "srun --unbuffered" in script and "--kill-on-bad-exit=1" in script
    info = subprocess.run(["scontrol", "show", "job", job.job_id], capture_output=True, text=True, check=True).stdout
    # (This cluster enforces no accounts: it files the job under the default one.)
    for field in ["JobName=flags-test", "Reason=JobHeldUser", "Partition=debug", "TimeLimit=00:07:00",
                  "Comment=flexcore test", "NumTasks=2", "MailType=END"]:
        assert field in info, field


def test_a_job_pickles_paths_bindings_and_plugin_names_never_gin_state(tmp_path, monkeypatch):
    import pickletools

    import cloudpickle

    from flexcore.engine.slurm import SlurmJob, portable_args

    monkeypatch.chdir(tmp_path)
    args = train_args(tmp_path, "out", "--launcher", "slurm", "--gin", "Solver.lr = 0.5", "--seed", "3")
    args.config_files, args.output_dir = ["tiny.gin"], "out"  # relative, as a user types them
    job_args = portable_args(args)
    assert job_args.config_files == [str(tmp_path / "tiny.gin")]
    assert job_args.output_dir == str(tmp_path / "out")
    assert all(os.path.isabs(p) and p.endswith(".py") for p in job_args.plugins)
    assert job_args.bindings == ["Solver.lr = 0.5"] and job_args.seed == 3
    assert job_args.launcher == "local" and job_args.sweep == [] and not job_args.wait
    payload = cloudpickle.dumps(SlurmJob(main, job_args))
    strings = {arg for _, arg, _ in pickletools.genops(payload) if isinstance(arg, str)}
    assert "flexcore.engine.defaults" in strings and "main" in strings  # main goes by reference
    assert not [s for s in strings if s == "gin" or s.startswith("gin.")]  # no gin module, object or state
    assert len(payload) < 4096  # strings, not a config


@with_marks(slurm_test)
def test_a_job_back_in_the_queue_is_not_taken_for_finished(tmp_path, slurm):
    """wait_for_jobs asks the queue before believing accounting: a requeued job whose last
    attempt sacct reports as ended is still waited for (the race behind a flaky requeue)."""
    import submitit

    from flexcore.engine.slurm import _queued_again

    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(timeout_min=2, slurm_additional_parameters={"hold": True})
    job = executor.submit(sum, [1, 2])
    poll(lambda: job.job_id in slurm_ids(tmp_path), 30, "the held job to be queued")
    assert _queued_again(job)  # held: pending, no result
    subprocess.run(["scontrol", "release", job.job_id], check=True)
    wait_for_jobs([job], poll_s=0.5, state_poll_s=2, timeout_s=JOB_TIMEOUT_S)
    assert job.result() == 3 and not _queued_again(job)  # finished with a result: done


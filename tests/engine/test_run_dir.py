"""The run directory under bad values, a second run, a full or read-only disk: real processes, real mounts."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flexcore.config import resolve_config_file
from flexcore.engine.cli import main as cli_main
from flexcore.engine.run_dir import LOCK_FILE, RunDirLock, lock_holder
from launch_fixtures import PLUGINS, TRAIN_NET, read_metrics, write_config

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_DIR_PLUGIN = os.path.join(HERE, "run_dir_plugin.py")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _argv(tmp_path, output_dir, *gin, extra=()):
    argv = ["--config-file", write_config(tmp_path), "--output-dir", str(output_dir)]
    for plugin in PLUGINS + [RUN_DIR_PLUGIN]:
        argv += ["--plugin", plugin]
    for binding in gin:
        argv += ["--gin", binding]
    return argv + list(extra)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def _train(tmp_path, output_dir, *gin, extra=(), timeout=300):
    return subprocess.run([sys.executable, TRAIN_NET, *_argv(tmp_path, output_dir, *gin, extra=extra)],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=timeout)


def _start(tmp_path, output_dir, *gin, extra=()):
    return subprocess.Popen([sys.executable, TRAIN_NET, *_argv(tmp_path, output_dir, *gin, extra=extra)],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


def _one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# -- bad values: the binding's origin, exit 2, nothing written ---------------------------------

def _line_of(config, text):
    with open(resolve_config_file(config), encoding="utf-8") as f:
        return next(number for number, line in enumerate(f, start=1) if line.startswith(text))


HORIZON_ORIGIN = (f"FlexConv.horizon = %HORIZON  (base/models/flexconv.gin, line "
                  f"{_line_of('base/models/flexconv.gin', 'FlexConv.horizon = %HORIZON')})")


@pytest.mark.parametrize("binding, origin, says", [
    ("HORIZON = 8", HORIZON_ORIGIN, "horizon must be odd"),
    ("HORIZON = 'abc'", HORIZON_ORIGIN, "got 'abc'"),
    ("Data.batch_size = -64", "Data.batch_size = -64  (--gin)", "Data.batch_size must be an integer >= 1"),
    ("Schedule.epochs = 2.5", "Schedule.epochs = 2.5  (--gin)", "Schedule.epochs must be an integer >= 0, got 2.5"),
    ("Solver.lr = 'fast'", "Solver.lr = 'fast'  (--gin)", "Solver.lr must be a number >= 0, got 'fast'"),
    ("FlexNet.dropout = 1.5", "FlexNet.dropout = 1.5  (--gin)", "dropout probability has to be between 0 and 1"),
])
def test_bad_value_names_its_binding_and_writes_nothing(tmp_path, capsys, monkeypatch, binding, origin, says):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = ["--config-file", "quick/digits_flexnet.gin", "--output-dir", str(out), "--gin", binding]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Config error: ") and says in err and origin in err, err
    if "%HORIZON" in origin:  # the macro's own binding too
        assert f"{binding}  (--gin)" in err
    assert "Traceback" not in err and len(err.splitlines()) <= 5
    assert not out.exists()


@pytest.mark.slow
def test_bad_value_in_a_file_names_file_and_line_from_a_real_process(tmp_path):
    (tmp_path / "exp.gin").write_text("include 'quick/digits_flexnet.gin'\n\nFlexNet.dropout = 1.5  # too much\n")
    result = subprocess.run([sys.executable, TRAIN_NET, "--config-file", "exp.gin", "--output-dir", "out"],
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "FlexNet.dropout = 1.5  (exp.gin, line 3)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_value_met_while_a_job_runs_is_a_config_error_too(tmp_path, capsys, monkeypatch):
    """A cross-resolution job builds its stage trainers as it runs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cross.gin").write_text(
        "Data.dataset = 'TinyShapes'\nbuild_model.backbone = @TinyNet\nSchedule.epochs = 1\n"
        "Data.batch_size = -64\nexperiment.job = @CrossResolution\nCrossResolution.source_resolution = 8\n"
        "CrossResolution.target_resolution = 16\nCrossResolution.finetune_epochs = 1\n")
    argv = ["--config-file", "cross.gin", "--output-dir", "out", "--plugin", PLUGINS[0]]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Data.batch_size must be an integer >= 1" in err
    assert "Data.batch_size = -64  (cross.gin, line 4)" in err
    assert "Traceback" not in err


# -- one run per output dir --------------------------------------------------------------------

@pytest.mark.slow
def test_second_run_into_a_busy_dir_is_refused_and_the_first_is_untouched(tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    first = _start(tmp_path, out, "Trainer.extra_hooks = [@WaitForFile]", f"WaitForFile.path = '{go}'")
    try:
        _wait_for(str(go) + ".waiting", first)  # the first run is training, past its first metrics
        holder = json.loads((out / LOCK_FILE).read_text())
        assert holder["pid"] == first.pid
        for extra in ((), ("--resume",)):
            second = _train(tmp_path, out, extra=extra)
            assert second.returncode == 1
            line = _one_error_line(second.stderr)
            assert f"is in use by another run: pid {first.pid} on host" in line and "Nothing was changed" in line
    finally:
        go.touch()
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    iterations = [m["iteration"] for m in read_metrics(out) if "loss" in m]
    assert iterations == sorted(set(iterations))  # one writer: no line twice
    assert (out / LOCK_FILE).read_text() == ""  # released on exit


@pytest.mark.slow
def test_lock_of_a_killed_run_is_taken_over_and_reported(tmp_path):
    out, go = tmp_path / "run", tmp_path / "never"
    first = _start(tmp_path, out, "Trainer.extra_hooks = [@WaitForFile]", f"WaitForFile.path = '{go}'")
    _wait_for(str(go) + ".waiting", first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    resumed = _train(tmp_path, out, extra=("--resume",))
    assert resumed.returncode == 0, resumed.stderr
    assert f"the run that held it (pid {first.pid} on host" in resumed.stdout
    assert "ended without releasing it" in resumed.stdout


def test_lock_kept_by_a_forked_child_of_a_killed_run_is_explained(tmp_path):
    """flock belongs to the open file: a forked child (a data-loader worker) keeps it after kill -9."""
    script = (
        "import os, sys, time\n"
        "from flexcore.engine.run_dir import RunDirLock\n"
        "RunDirLock(sys.argv[1]).acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(60); os._exit(0)\n"
        "print(child, flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait(timeout=30)
        said = lock_holder(str(tmp_path / "run"))
        assert f"pid {holder.pid} on host" in said and "that process is gone, but a process it forked" in said
    finally:
        os.kill(child, signal.SIGKILL)
    time.sleep(0.5)
    assert lock_holder(str(tmp_path / "run")) is None  # the kernel let go with the last holder


@pytest.mark.slow
def test_lock_held_by_this_process_refuses_a_ddp_run_cleanly(tmp_path):
    out = tmp_path / "run"
    with RunDirLock(str(out)):
        result = _train(tmp_path, out, extra=("--num-processes", "2"))
    assert result.returncode == 1
    assert f"pid {os.getpid()} on host" in _one_error_line(result.stderr)
    assert sorted(os.listdir(out)) == [LOCK_FILE]


# -- system errors: one line, what was kept, exit 1 ----------------------------------------------

def test_output_dir_naming_a_file(tmp_path):
    (tmp_path / "out").write_text("my notes")
    result = _train(tmp_path, tmp_path / "out")
    assert result.returncode == 1
    assert "is an existing file, not a folder. Nothing was written" in _one_error_line(result.stderr)
    assert (tmp_path / "out").read_text() == "my notes"


@pytest.fixture
def tmpfs(tmp_path):
    """A real 4 MiB tmpfs mount (needs root: CI runs the tests as root)."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


@pytest.mark.slow
def test_disk_full_is_one_line_and_the_run_resumes_once_space_is_freed(tmp_path, tmpfs):
    out, filler = tmpfs / "run", tmpfs / "filler"
    full = _train(tmp_path, out, "Trainer.extra_hooks = [@FillDisk]", f"FillDisk.path = '{filler}'",
                  "FillDisk.iteration = 4", "Schedule.period_unit = 'iter'", "Schedule.checkpoint_period = 2")
    assert full.returncode == 1, full.stderr
    line = _one_error_line(full.stderr)
    assert line.startswith("Error: Cannot write the run: the disk is full") and "--resume" in line
    assert "the last complete checkpoint model_0000003.pth" in line
    filler.unlink()
    resumed = _train(tmp_path, out, "Schedule.period_unit = 'iter'", "Schedule.checkpoint_period = 2",
                     extra=("--resume",))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed from" in resumed.stdout and (out / "summary.json").is_file()


@pytest.mark.slow
def test_read_only_run_dir_is_one_line_and_changes_nothing(tmp_path, tmpfs):
    out = tmpfs / "run"
    assert _train(tmp_path, out).returncode == 0
    before = _snapshot(out)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    run_kept = "keeps the last complete checkpoint model_final.pth, summary.json, metrics.json up to iteration 8"
    cases = [(out, ("--resume",), run_kept),
             (tmpfs / "new", (), "new was not created")]
    for target, extra, kept in cases:
        result = _train(tmp_path, target, extra=extra)
        assert result.returncode == 1
        line = _one_error_line(result.stderr)
        assert "Cannot write the run: the file system is read-only" in line and "Remount it writable" in line
        assert kept in line
    assert _snapshot(out) == before

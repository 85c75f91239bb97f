"""A run directory under kills, restarts and resumes: real train_net processes, real SIGKILLs.

Each process runs what ``tools/train_net.py`` runs; they are forked from one process that
imported flexcore once (``train_net_runs.py``), which keeps a dozen runs affordable. A kill
in the middle of one chosen write comes from ``flexcore.utils.faults`` (the process sends
itself SIGKILL there), other kills from the parent once the output shows a given line.
"""
import glob
import json
import logging
import os

import pytest
import torch

from flexcore.engine.run_dir import ResumeError, check_resume, remove_stale_temp_files
from flexcore.utils.faults import ENV_VAR as KILL_DURING_WRITE
from train_net_runs import quick, read_metrics, snapshot, tensorboard_scalars

PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_dir_plugin.py")
KILLED = -9

# 20 iterations (one epoch), validation and a checkpoint every 10.
ONE_EPOCH = ("Schedule.epochs = 1", "Schedule.eval_period = 10", "Schedule.checkpoint_period = 10")


def _iterations(run):
    return [line["iteration"] for line in read_metrics(run)]


def _event_files(run):
    return glob.glob(os.path.join(run, "events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["killed before the first checkpoint", "checkpoint_period 0", "NaN at iteration 1"])
def test_a_restart_from_scratch_replaces_the_abandoned_metrics_and_events(train_net_server, tmp_path, case):
    run = tmp_path / "run"
    bindings = ONE_EPOCH
    if case == "killed before the first checkpoint":
        first = train_net_server.run(quick(run, *bindings), tmp_path, env={KILL_DURING_WRITE: "model_0*.pth@1"})
        assert first.returncode == KILLED, first.output
    elif case == "checkpoint_period 0":
        bindings = ONE_EPOCH + ("Schedule.checkpoint_period = 0",)
        first = train_net_server.run(quick(run, *bindings), tmp_path, kill_after_lines=("iter: 15/20", 1, 0.05))
        assert first.returncode == KILLED, first.output
    else:
        first = train_net_server.run(quick(run, *bindings, "Solver.lr = 1e30"), tmp_path)
        assert first.returncode == 1 and "Loss is not finite at iteration 1" in first.output
        assert "No checkpoint was written" in first.output and "--resume" in first.output
    assert not (run / "last_checkpoint").exists()
    assert (run / "metrics.json").stat().st_size > 0 and _event_files(run)  # the abandoned start's

    again = train_net_server.run(quick(run, *bindings, resume=True), tmp_path)
    assert again.returncode == 0, again.output
    assert "starting from scratch" in again.output
    assert _iterations(run) == list(range(21))  # each step once; 20: the final test
    assert len(_event_files(run)) == 1
    assert [step for step, _ in tensorboard_scalars(run)["lr"]] == list(range(20))


@pytest.mark.slow
def test_a_torn_last_metrics_line_is_dropped_on_resume(train_net_server, tmp_path):
    run = tmp_path / "run"
    # The 13th line written is iteration 12's: cut in half, after the checkpoint of iteration 9.
    first = train_net_server.run(quick(run, *ONE_EPOCH), tmp_path, env={KILL_DURING_WRITE: "metrics.json@13"})
    assert first.returncode == KILLED, first.output
    torn = (run / "metrics.json").read_text().splitlines()[-1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(torn)
    assert (run / "last_checkpoint").read_text() == "model_0000009.pth"

    again = train_net_server.run(quick(run, *ONE_EPOCH, resume=True), tmp_path)
    assert again.returncode == 0, again.output
    assert f"{run / 'metrics.json'}: dropped its last line, cut short" in again.output
    assert _iterations(run) == list(range(21))


@pytest.mark.slow
def test_a_refused_resume_changes_nothing_in_the_run_dir(train_net_server, tmp_path):
    run = tmp_path / "run"
    first = train_net_server.run(quick(run, *ONE_EPOCH), tmp_path, kill_after_lines=("iter: 15/20", 1, 0.0))
    assert first.returncode == KILLED, first.output
    before = snapshot(run)
    assert {"config.gin", "operative_config.gin", "last_checkpoint"} <= set(before)

    other_model = train_net_server.run(quick(run, *ONE_EPOCH, "FlexNet.hidden_channels = 8", resume=True), tmp_path)
    assert other_model.returncode == 1 and "does not match the model" in other_model.output
    assert snapshot(run) == before  # log.txt aside, which records the attempt


@pytest.mark.slow
def test_an_unreadable_best_model_keeps_the_final_results(train_net_server, tmp_path):
    run = tmp_path / "run"
    # 40 iterations; the last validation (weights zeroed) is not the best, so the final
    # test of the best model reads model_best.pth.
    bindings = ("Schedule.epochs = 2", "Schedule.eval_period = 20", "Schedule.checkpoint_period = 10",
                "Trainer.extra_hooks = [@ForgetBeforeLastStep]")
    argv = ["--plugin", PLUGIN] + quick(run, *bindings)
    first = train_net_server.run(argv, tmp_path, env={KILL_DURING_WRITE: "model_final.pth@1"})
    assert first.returncode == KILLED, first.output
    assert (run / "last_checkpoint").read_text() == "model_0000029.pth"
    best = run / "model_best.pth"
    assert torch.load(best, weights_only=True)["best"]["iteration"] == 19
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])

    for attempt in range(2):  # the retry reports the same, and rewrites nothing
        again = train_net_server.run(argv + ["--resume"], tmp_path)
        assert again.returncode == 1, again.output
        assert f"{best}" in again.output and "cannot be read" in again.output
        assert "model_final.pth" in again.output and "summary.json" in again.output
        assert "Traceback" not in again.output
        summary = json.loads((run / "summary.json").read_text())
        assert summary["best_iteration"] == 19 and "test_accuracy_final_model" in summary
        assert "test_accuracy_best_model" not in summary
        assert any(str(best) in error for error in summary["errors"])
        assert (run / "last_checkpoint").read_text() == "model_final.pth"
        if attempt == 0:
            final = (run / "model_final.pth").read_bytes()
            written = (run / "summary.json").read_text()
    assert (run / "model_final.pth").read_bytes() == final and (run / "summary.json").read_text() == written


@pytest.mark.slow
@pytest.mark.parametrize("length", ["Schedule.epochs = 2", "Schedule.max_iter = 10"])
def test_resuming_a_finished_run_with_another_length_is_refused(train_net_server, tmp_path, length):
    run = tmp_path / "run"
    done = train_net_server.run(quick(run, *ONE_EPOCH), tmp_path)
    assert done.returncode == 0, done.output
    before = snapshot(run)
    bindings = ONE_EPOCH + (length,) if "epochs" in length else ONE_EPOCH + ("Schedule.epochs = 0", length)

    refused = train_net_server.run(quick(run, *bindings, resume=True), tmp_path)
    assert refused.returncode == 1, refused.output
    assert "finished" in refused.output and "--output-dir" in refused.output and "--weights" in refused.output
    assert "Traceback" not in refused.output
    assert snapshot(run) == before
    same = train_net_server.run(quick(run, *ONE_EPOCH, resume=True), tmp_path)
    assert same.returncode == 0 and "already finished" in same.output
    assert snapshot(run) == before


def _periodic(run):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(run, "model_0*.pth")))


def _temp_files(run):
    return sorted(name for name in os.listdir(run) if name.endswith(".tmp"))


@pytest.mark.slow
def test_max_to_keep_counts_checkpoints_of_earlier_sessions_and_stale_temp_files_go(train_net_server, tmp_path):
    run = tmp_path / "run"
    bindings = ("Schedule.epochs = 2", "Schedule.eval_period = 20", "Schedule.checkpoint_period = 5",
                "Checkpoints.max_to_keep = 2")
    # Killed while tagging the 3rd checkpoint (iteration 14), then while writing the next one.
    first = train_net_server.run(quick(run, *bindings), tmp_path, env={KILL_DURING_WRITE: "last_checkpoint@3"})
    assert first.returncode == KILLED, first.output
    assert [n.split(".")[1] for n in _temp_files(run)] == ["last_checkpoint"]
    second = train_net_server.run(quick(run, *bindings, resume=True), tmp_path,
                                  env={KILL_DURING_WRITE: "model_0*.pth@100"})
    assert second.returncode == KILLED, second.output
    assert "stale temporary file" in second.output
    assert [n.split(".")[1] for n in _temp_files(run)] == ["model_0000014"]
    assert _periodic(run) == ["model_0000004.pth", "model_0000009.pth", "model_0000014.pth"]

    third = train_net_server.run(quick(run, *bindings, resume=True), tmp_path)
    assert third.returncode == 0, third.output
    assert _periodic(run) == ["model_0000029.pth", "model_0000034.pth"]
    assert _temp_files(run) == []
    assert "stale temporary file" in third.output


def test_check_resume_rules(caplog):
    check_resume("run/model_0000009.pth", 9, 40, 40)  # an unfinished run, same length
    check_resume("run/model_final.pth", 39, 40, 40)  # a finished run, same length: nothing to do
    check_resume("run/model_final.pth", 39, None, 40)  # saved before checkpoints held the length
    with pytest.raises(ResumeError, match=r"finished run of 40 iterations .* train on past its end .*"
                                          r"--output-dir NEW_DIR --weights run/model_final.pth"):
        check_resume("run/model_final.pth", 39, 40, 80)
    with pytest.raises(ResumeError, match="finished run of 40 iterations .* cut it short"):
        check_resume("run/model_final.pth", 39, None, 20)
    with pytest.raises(ResumeError, match="has done 30 iterations, as many as or more than the 20"):
        check_resume("run/model_0000029.pth", 29, 40, 20)
    logger = logging.getLogger("flexcore")
    logger.propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="flexcore"):
            check_resume("run/model_0000009.pth", 9, 40, 80)  # longer before the end: allowed, said
    finally:
        logger.propagate = False
    assert "started with 40 iterations and resumes with 80" in caplog.text


def test_remove_stale_temp_files_only_of_run_files(tmp_path):
    names = [".model_0000009.pth.k2j_x9a1.tmp", ".summary.json.abcdefgh.tmp", ".last_checkpoint.00000000.tmp",
             ".metrics.json.zzzzzzzz.tmp", ".notes.txt.abcdefgh.tmp", "model_0000009.pth", ".model_best.pth.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_temp_files(str(tmp_path)) == sorted(names[:4])
    assert sorted(os.listdir(tmp_path)) == sorted(names[4:])
    assert remove_stale_temp_files(str(tmp_path / "absent")) == []

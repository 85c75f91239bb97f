"""Kill -9 a training run at 20+ random moments, resume each time: the result equals an uninterrupted run.

Half of the kills land in the middle of a write of each kind of file the run writes
(``flexcore.utils.faults`` makes the process SIGKILL itself after half of a chosen write
call reached the disk), the others at a random moment after a random number of console
lines. After every kill the run dir must hold nothing an uninterrupted run would not have
written; after the resume that finishes it, metrics.json, TensorBoard's scalars, every
checkpoint and summary.json must equal the uninterrupted run's, timings aside.
"""
import glob
import json
import os
import random
import time

import pytest
import torch

from flexcore.utils.faults import ENV_VAR as KILL_DURING_WRITE
from train_net_runs import quick, tensorboard_scalars, train_net

PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_dir_plugin.py")
# 60 iterations: validation and a checkpoint every 10; the last validation is not the best
# (weights zeroed before the last step), so a resumed final test reads model_best.pth.
BINDINGS = ("Schedule.epochs = 3", "Schedule.eval_period = 10", "Schedule.checkpoint_period = 10",
            "Trainer.extra_hooks = [@ForgetBeforeLastStep]")
MAX_TO_KEEP = 3  # Trainer's default
ITERATIONS, LOG_PERIOD, CHECKPOINT_PERIOD = 60, 5, 10
WRITE_KINDS = ("metrics.json", "events.out.tfevents*", "model_0*.pth", "last_checkpoint", "model_best.pth",
               "model_final.pth", "summary.json")
MIN_KILLS = 22
# wall-clock figures: measured, so they differ between any two runs
TIMING = {"time", "data_time", "kernel_generation/ms", "kernel_generation/share"}
SESSION = {"wall_time_s", "session_wall_time_s", "train_samples_per_s", "resumed_at_iteration"}


def _difference(a, b, where="") -> str:
    """'' if ``a`` equals ``b`` (tensors bitwise; a wall-clock time anywhere is skipped), else where not."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys {sorted(set(a) ^ set(b))}"
        return next((d for k in a if k != "wall_time_s" for d in [_difference(a[k], b[k], f"{where}/{k}")] if d), "")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: length {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) for d in [_difference(x, y, f"{where}[{i}]")] if d), "")
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return "" if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) else f"{where}: tensors differ"
    return "" if a == b or (a != a and b != b) else f"{where}: {a!r} != {b!r}"


def _checkpoint(path):
    return torch.load(path, weights_only=True)


def _lines(run):
    """metrics.json's parseable lines by iteration, without timings, and whether the last line was cut."""
    with open(os.path.join(run, "metrics.json")) as f:
        text = f.read()
    lines, torn = text.splitlines(), False
    if text and not text.endswith("\n"):
        lines, torn = lines[:-1], True
    parsed = [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]
    return parsed, torn


def _check_partial(run, reference, context):
    """After a kill: everything on disk is what the uninterrupted run wrote (a prefix of it)."""
    if os.path.exists(os.path.join(run, "metrics.json")):
        lines, _ = _lines(run)
        iterations = [line["iteration"] for line in lines]
        assert iterations == sorted(set(iterations)), f"{context}: repeated or unordered iterations {iterations}"
        for line in lines:
            assert line == reference["metrics"][line["iteration"]], f"{context}: line {line['iteration']} differs"
    for path in glob.glob(os.path.join(run, "model_0*.pth")) + glob.glob(os.path.join(run, "model_final.pth")):
        name = os.path.basename(path)
        difference = _difference(_checkpoint(path), _checkpoint(os.path.join(reference["dir"], name)))
        assert not difference, f"{context}: {name} differs at {difference}"
    tag = os.path.join(run, "last_checkpoint")
    if os.path.exists(tag):
        assert os.path.exists(os.path.join(run, open(tag).read().strip())), f"{context}: dangling last_checkpoint"
    if os.path.exists(os.path.join(run, "summary.json")):
        _check_summary(run, reference, context)


def _check_summary(run, reference, context):
    with open(os.path.join(run, "summary.json")) as f:
        summary = {k: v for k, v in json.load(f).items() if k not in SESSION}
    assert summary == reference["summary"], f"{context}: summary.json differs"


def _check_finished(run, reference, context):
    lines, torn = _lines(run)
    assert not torn and lines == list(reference["metrics"].values()), f"{context}: metrics.json differs"
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run, "*.pth")))
    periodic = sorted(os.path.basename(p) for p in glob.glob(os.path.join(reference["dir"], "model_0*.pth")))
    assert names == sorted(periodic[-MAX_TO_KEEP:] + ["model_best.pth", "model_final.pth"]), f"{context}: {names}"
    for name in names:
        ours, theirs = _checkpoint(os.path.join(run, name)), _checkpoint(os.path.join(reference["dir"], name))
        difference = _difference(ours, theirs)
        assert not difference, f"{context}: {name} differs at {difference}"
    assert open(os.path.join(run, "last_checkpoint")).read() == "model_final.pth"
    _check_summary(run, reference, context)
    scalars = {k: v for k, v in tensorboard_scalars(run).items() if k not in TIMING}
    assert scalars == reference["tensorboard"], f"{context}: TensorBoard scalars differ"
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")], f"{context}: temporary files left"


class _WriteCounter:
    calls = 0

    def write(self, data):
        self.calls += 1
        return len(data)

    def flush(self):
        pass


def _write_calls(save, obj) -> int:
    counter = _WriteCounter()
    save(obj, counter)
    return counter.calls


def _reference(tmp_path):
    run = tmp_path / "uninterrupted"
    # Keeps every periodic checkpoint to compare with; a run keeping MAX_TO_KEEP has the last ones.
    done = train_net(["--plugin", PLUGIN] + quick(run, *BINDINGS, "Checkpoints.max_to_keep = None"), str(tmp_path))
    assert done.returncode == 0, done.output
    with open(run / "summary.json") as f:
        written = json.load(f)
    summary = {k: v for k, v in written.items() if k not in SESSION}
    assert summary["best_iteration"] not in (None, ITERATIONS - 1), "the last validation must not be the best"
    lines, _ = _lines(run)
    # Write calls per file, to draw a cut that lands inside one.
    calls = {name: _write_calls(torch.save, _checkpoint(run / file)) for name, file in
             (("model_0*.pth", "model_0000009.pth"), ("model_best.pth", "model_best.pth"),
              ("model_final.pth", "model_final.pth"))}
    calls["summary.json"] = _write_calls(lambda obj, f: json.dump(obj, f, indent=2), written)
    return {"dir": str(run), "metrics": {line["iteration"]: line for line in lines}, "summary": summary,
            "tensorboard": {k: v for k, v in tensorboard_scalars(run).items() if k not in TIMING}, "calls": calls}


def _resumes_at(run) -> int:
    try:
        name = open(os.path.join(run, "last_checkpoint")).read().strip()
    except FileNotFoundError:
        return 0
    return ITERATIONS if name == "model_final.pth" else int(name[len("model_"):-len(".pth")]) + 1


def _plan(kind, run, reference, rng):
    """(env, kill_after_lines, description) of a kill of ``kind`` due in this attempt, or None if none is."""
    start = _resumes_at(run)
    steps = range(start, ITERATIONS - 1)
    checkpoints = sum(1 for i in steps if (i + 1) % CHECKPOINT_PERIOD == 0)
    console_lines = sum(1 for i in range(start, ITERATIONS) if (i + 1) % LOG_PERIOD == 0)
    if kind == "timed":
        if not console_lines:
            return None
        line, delay = rng.randint(1, console_lines), rng.uniform(0.0, 0.5)
        return {}, ("iter: ", line, delay), f"after console line {line} + {delay:.2f} s"
    most = {
        "metrics.json": ITERATIONS - start + 1, "events.out.tfevents*": console_lines + 1,
        "model_0*.pth": checkpoints * reference["calls"]["model_0*.pth"], "last_checkpoint": checkpoints + 1,
        "model_best.pth": reference["calls"]["model_best.pth"],  # in the session's first save, if any
        "model_final.pth": reference["calls"]["model_final.pth"], "summary.json": reference["calls"]["summary.json"],
    }[kind]
    if most < 1:
        return None
    spec = f"{kind}@{rng.randint(1, most)}"
    return {KILL_DURING_WRITE: spec}, None, f"during write {spec}"


def _next_second():
    """TensorBoard reads a run's event files in name order, which starts with the second they were made in."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)


@pytest.mark.slow
def test_killed_at_random_moments_and_resumed_equals_an_uninterrupted_run(train_net_server, tmp_path):
    seed = int(os.environ.get("FLEXCORE_FAULT_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    reference = _reference(tmp_path)
    deck = list(WRITE_KINDS) + ["timed"] * len(WRITE_KINDS)
    rng.shuffle(deck)
    kills, cut_kinds, segment = [], set(), 0
    while (len(kills) < MIN_KILLS or not set(WRITE_KINDS) <= cut_kinds) and len(kills) < 3 * MIN_KILLS:
        segment += 1
        run = tmp_path / f"run{segment}"
        for attempt in range(40):
            if not deck:
                deck = list(WRITE_KINDS) + ["timed"] * len(WRITE_KINDS)
                rng.shuffle(deck)
            plan = None
            for index, kind in enumerate(deck):  # the first kind that has a write left to cut
                plan = _plan(kind, run, reference, rng)
                if plan is not None:
                    del deck[index]
                    break
            env, kill_after, what = plan or ({}, None, "never")
            context = f"seed {seed}, run {segment}, attempt {attempt} killed {what}"
            _next_second()
            result = train_net_server.run(["--plugin", PLUGIN] + quick(run, *BINDINGS, resume=True), str(tmp_path),
                                          env=env, kill_after_lines=kill_after)
            if result.returncode == 0:  # finished before the kill was due
                if plan is not None:
                    deck.insert(0, kind)
                _check_finished(run, reference, context.replace("killed", "finished, not killed"))
                break
            assert result.returncode == -9, f"{context}: exit {result.returncode}\n{result.output[-3000:]}"
            kills.append(what)
            cut_kinds.add(kind)
            _check_partial(run, reference, context)
        else:
            pytest.fail(f"seed {seed}: run {segment} never finished")
    print(f"seed {seed}: {len(kills)} kills in {segment} runs: " + "; ".join(kills))
    assert len(kills) >= MIN_KILLS and set(WRITE_KINDS) <= cut_kinds, (seed, kills)

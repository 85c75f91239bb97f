import json
import logging
import time

import pytest

from flexcore.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardWriter,
    get_event_storage,
    has_event_storage,
)


def test_storage_history_smoothing_and_scopes():
    with EventStorage(start_iter=5) as storage:
        assert get_event_storage() is storage and has_event_storage()
        for value in (4.0, 1.0, 2.0):
            storage.put_scalar("loss", value)
            storage.step()
        storage.put_scalar("acc", 50, smoothing_hint=False)
        with storage.name_scope("kernel"):
            with storage.name_scope("stem"):
                storage.put_scalar("size", 5, smoothing_hint=False)
        assert [v for v, _ in storage.history("loss").values()] == [4.0, 1.0, 2.0]
        assert [i for _, i in storage.history("loss").values()] == [5, 6, 7]
        latest = storage.latest_with_smoothing_hint(window_size=3)
        assert latest["loss"] == (2.0, 7)  # median of 4, 1, 2
        assert latest["acc"] == (50.0, 8)
        assert storage.latest()["kernel/stem/size"] == (5.0, 8)
        with pytest.raises(ValueError, match="smoothing_hint"):
            storage.put_scalar("acc", 1, smoothing_hint=True)
        with pytest.raises(KeyError, match="No scalar named 'nope'"):
            storage.history("nope")
    assert not has_event_storage()
    with pytest.raises(RuntimeError, match="inside the training loop"):
        get_event_storage()


def test_json_writer_lines_and_resume_truncation(tmp_path):
    path = str(tmp_path / "metrics.json")
    with EventStorage() as storage:
        writer = JSONWriter(path, window_size=1, iters_per_epoch=2)
        for it in range(4):
            storage.iter = it
            storage.put_scalar("loss", float(it))
            if it == 1:
                storage.put_scalar("val/accuracy", 90.0, smoothing_hint=False)
            writer.write()
        writer.close()
    lines = [json.loads(line) for line in open(path)]
    assert [ln["iteration"] for ln in lines] == [0, 1, 2, 3]
    assert lines[1] == {"iteration": 1, "epoch": 1.0, "loss": 1.0, "val/accuracy": 90.0}
    # A resume at iteration 2 drops lines 2 and 3 (they are redone) and appends.
    with EventStorage(start_iter=2) as storage:
        writer = JSONWriter(path, window_size=1, start_iter=2)
        storage.put_scalar("loss", 20.0)
        writer.write()
        writer.close()
    lines = [json.loads(line) for line in open(path)]
    assert [ln["iteration"] for ln in lines] == [0, 1, 2]
    assert lines[-1]["loss"] == 20.0


def test_tensorboard_writer_round_trip(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with EventStorage() as storage:
        writer = TensorboardWriter(str(tmp_path), window_size=1)
        for it in range(3):
            storage.iter = it
            storage.put_scalar("loss", 1.0 / (it + 1))
            writer.write()
        writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    events = acc.Scalars("loss")
    assert [e.step for e in events] == [0, 1, 2]
    assert events[-1].value == pytest.approx(1 / 3)


def test_console_line(caplog):
    logger = logging.getLogger("flexcore")
    logger.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="flexcore"), EventStorage() as storage:
            printer = CommonMetricPrinter(max_iter=10, window_size=2, iters_per_epoch=4, keys=("train/accuracy",))
            for it in range(3):
                storage.iter = it
                storage.put_scalars(loss=2.0, time=0.5, data_time=0.1)
                storage.put_scalar("lr", 0.01, smoothing_hint=False)
                storage.put_scalar("train/accuracy", 75.0)
            printer.write()
    finally:
        logger.propagate = False
    line = caplog.records[-1].getMessage()
    assert "iter: 3/10" in line and "epoch: 1" in line and "loss: 2" in line and "lr: 0.01" in line
    assert "eta: 0:00:04" in line  # 7 remaining x 0.5 s (rounded)
    assert "train/accuracy: 75" in line


def test_evaluations_between_writes_are_all_written(tmp_path):
    path = str(tmp_path / "metrics.json")
    with EventStorage() as storage:
        writer = JSONWriter(path, window_size=5)
        for it in range(10):
            storage.iter = it
            storage.put_scalar("loss", float(it))
            if it % 3 == 2:  # evaluations every 3 iterations, writes every 5
                storage.put_scalar("val/accuracy", float(it), smoothing_hint=False)
            if it % 5 == 4:
                writer.write()
        writer.close()
    lines = [json.loads(line) for line in open(path)]
    assert [(ln["iteration"], ln.get("val/accuracy")) for ln in lines] == [
        (2, 2.0), (4, None), (5, 5.0), (8, 8.0), (9, None)]
    assert lines[1]["loss"] == 2.0 and lines[-1]["loss"] == 7.0  # medians of the last 5


def _write_lines(path, lines, tail=""):
    with open(path, "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
        f.write(tail)


def _caught(caplog):
    logger = logging.getLogger("flexcore")
    logger.propagate = True
    return caplog.at_level(logging.INFO, logger="flexcore")


def test_json_writer_drops_a_torn_last_line_and_names_the_file(tmp_path, caplog):
    path = str(tmp_path / "metrics.json")
    _write_lines(path, [{"iteration": i, "loss": 1.0} for i in range(4)], tail='{"iteration": 4, "lo')
    try:
        with _caught(caplog), EventStorage(start_iter=3) as storage:
            writer = JSONWriter(path, window_size=1, start_iter=3)
            storage.put_scalar("loss", 3.5)
            writer.write()
            writer.close()
    finally:
        logging.getLogger("flexcore").propagate = False
    assert [json.loads(line)["iteration"] for line in open(path)] == [0, 1, 2, 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{path}: dropped its last line, cut short by an interrupted write (20 characters: "
                        "'{\"iteration\": 4, \"lo')"]


def test_json_writer_from_scratch_replaces_an_abandoned_start(tmp_path, caplog):
    path = str(tmp_path / "metrics.json")
    _write_lines(path, [{"iteration": i} for i in range(3)] + ["not an object"], tail="{\"iteration\": 3")
    try:
        with _caught(caplog), EventStorage() as storage:
            writer = JSONWriter(path, window_size=1)  # start_iter 0: no checkpoint to resume from
            storage.put_scalar("loss", 9.0)
            writer.write()
            writer.close()
    finally:
        logging.getLogger("flexcore").propagate = False
    assert [json.loads(line) for line in open(path)] == [{"iteration": 0, "loss": 9.0}]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "dropped line 4, which is not a JSON object" in messages and "dropped its last line" in messages
    assert "dropped the 3 lines of an earlier start that left no checkpoint" in messages


def test_tensorboard_writer_from_scratch_removes_earlier_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for start, values in ((0, (5.0, 6.0)), (0, (1.0, 2.0, 3.0)), (2, (30.0,))):  # abandoned, restart, resume
        with EventStorage(start_iter=start) as storage:
            writer = TensorboardWriter(str(tmp_path), window_size=1, start_iter=start)
            for it, value in enumerate(values, start):
                storage.iter = it
                storage.put_scalar("loss", value)
                writer.write()
            writer.close()
        time.sleep(1.01)  # event files are ordered by the second they were made in
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # the restart's and the resume's
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(0, 1.0), (1, 2.0), (2, 30.0)]

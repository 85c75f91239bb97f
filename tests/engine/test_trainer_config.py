"""The Trainer's settings in six gin groups: overrides, the flat names of 0.1 (same run, one
warning), unknown names caught before anything is built, and the migration tool."""
import dataclasses
import inspect
import json
import logging
import os
import re
import subprocess
import sys

import gin
import pytest

from flexcore.config import ConfigError, list_config_files, parse_config, resolve_config_file
from flexcore.engine.migrate_config import main as migrate_main
from flexcore.engine.migrate_config import migrate_text
from flexcore.engine.trainer import Trainer
from flexcore.engine.trainer_config import (
    FIELD_GROUP, TRAINER_ARGUMENTS, Schedule, Solver, check_bindings, configured_value, new_name,
)

from conftest import TINY_PLUGIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUPED = """\
Data.dataset = 'TinyShapes'
build_model.backbone = @TinyNet
TinyNet.dropout = 0.3
Data.batch_size = 16
Schedule.epochs = 2
Schedule.log_period = 1
Solver.lr = 0.01
Solver.lr_schedule = @Cosine
Cosine.warmup_epochs = 1
Outputs.tensorboard = False
Outputs.kernel_report = False
"""


def _flat(text):
    """The same config under 0.1's flat names (what users' old files look like)."""
    text = re.sub(r"^(Data|Schedule|Solver|Outputs)\.", "Trainer.", text, flags=re.M)
    return text.replace("Trainer.lr_schedule", "Trainer.schedule")


def _parse(path, bindings=()):
    gin.clear_config()
    parse_config([str(path)], list(bindings), plugins=[TINY_PLUGIN], finalize=False)


def _losses(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [(m["iteration"], m["loss"], m.get("lr")) for m in map(json.loads, f) if "loss" in m]


def test_flat_names_of_earlier_releases_train_the_same_run_with_one_warning(tmp_path, tiny_plugin, caplog):
    runs = {}
    for name, text in (("grouped", GROUPED), ("flat", _flat(GROUPED))):
        (tmp_path / f"{name}.gin").write_text(text)
        _parse(tmp_path / f"{name}.gin")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="flexcore"):
            trainer = Trainer(str(tmp_path / name))
        warnings = [r.getMessage() for r in caplog.records if "flat Trainer.* names" in r.getMessage()]
        if name == "flat":
            assert len(warnings) == 1, warnings  # one message listing all of them
            assert re.search(r"Trainer.schedule -> Solver.lr_schedule  \(\S*flat.gin, line 8\)", warnings[0])
            assert re.search(r"Trainer.dataset -> Data.dataset  \(\S*flat.gin, line 1\)", warnings[0])
            assert warnings[0].count(" -> ") == 8
        else:
            assert not warnings
        assert trainer.cfg.solver.lr_schedule is not None and trainer.cfg.schedule.epochs == 2
        trainer.resume_or_load(resume=False)
        trainer.train()
        runs[name] = _losses(tmp_path / name)
    assert runs["flat"] == runs["grouped"]  # bitwise, the cosine lr included
    assert len({lr for _, _, lr in runs["grouped"]}) > 2  # the schedule really ran


def test_overrides_and_given_groups_replace_configured_values(tmp_path, tiny_plugin):
    (tmp_path / "run.gin").write_text(GROUPED)
    _parse(tmp_path / "run.gin")
    trainer = Trainer(str(tmp_path / "a"), max_iter=3, epochs=0, fake_data=True, lr=0.5, max_to_keep=None)
    cfg = trainer.cfg
    assert (cfg.schedule.max_iter, cfg.schedule.epochs, cfg.schedule.log_period) == (3, 0, 1)
    assert cfg.data.fake_data and cfg.data.batch_size == 16 and cfg.checkpoints.max_to_keep is None
    assert cfg.solver.lr == 0.5 and trainer.optimizer.defaults["lr"] == 0.5
    # A given group is used as it is (built like any configurable: gin fills what it is not
    # given); an override still applies on top of it.
    trainer = Trainer(str(tmp_path / "b"), solver=Solver(lr=0.2), schedule=Schedule(max_iter=5, epochs=0),
                      grad_clip=1.0)
    assert (trainer.cfg.solver.lr, trainer.cfg.solver.grad_clip, trainer.max_iter) == (0.2, 1.0, 5)
    with pytest.raises(TypeError, match="Trainer.solver must be a Solver"):
        Trainer(str(tmp_path / "c"), solver={"lr": 0.1})
    with pytest.raises(TypeError, match="unknown setting 'batchsize'. Did you mean Data.batch_size"):
        Trainer(str(tmp_path / "d"), batchsize=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trainer.cfg.solver.lr = 1.0  # frozen: what the run uses is what it was built with


def test_unknown_flat_name_fails_at_parse_time_with_file_and_line(tmp_path, tiny_plugin):
    (tmp_path / "typo.gin").write_text(GROUPED + "Trainer.lrr = 0.1\n")
    _parse(tmp_path / "typo.gin")
    with pytest.raises(ConfigError, match=r"Trainer.lrr = 0.1  \(.*typo.gin, line 12\): .*Did you mean Solver.lr\?"):
        check_bindings()
    (tmp_path / "ok.gin").write_text(_flat(GROUPED) + "Trainer.extra_hooks = []\n")
    _parse(tmp_path / "ok.gin")
    check_bindings()  # flat names and Trainer's own arguments are fine


def test_configured_value_reads_groups_flat_names_and_macros(tmp_path, tiny_plugin):
    (tmp_path / "a.gin").write_text("BATCH = 32\nData.batch_size = %BATCH\nTrainer.lr = 0.3\nSolver.lr = 0.1\n"
                                    "Trainer.schedule = @Cosine\n")
    _parse(tmp_path / "a.gin")
    assert configured_value("batch_size") == 32
    assert configured_value("lr") == 0.3  # the flat name wins, as in the run (it is an override there)
    assert str(configured_value("lr_schedule")) == "@Cosine"
    assert configured_value("epochs", "unset") == "unset"


def test_trainer_init_is_a_short_assembler():
    lines, _ = inspect.getsourcelines(Trainer.__init__)
    assert len(lines) < 40, f"Trainer.__init__ has {len(lines)} lines"
    params = list(inspect.signature(Trainer.__init__).parameters)
    assert tuple(p for p in params if p not in ("self", "overrides")) == TRAINER_ARGUMENTS
    assert not set(TRAINER_ARGUMENTS) & set(FIELD_GROUP)  # a keyword is either Trainer's or a field's


def test_migrate_text_keeps_scopes_comments_and_other_bindings():
    text = (
        "Trainer.epochs = 10               # ten\n"
        "source/engine.Trainer.lr = 0.1    # a scoped one, module-qualified\n"
        "Trainer.schedule = @Cosine\n"
        "Trainer.extra_hooks = [@MyHook]\n"
        "SGDTrainer.lr = 0.5\n"
        "Trainer.val_split = None         # 'test' when selecting on test\n"
        "x = 'Trainer.lr = 3'\n"
    )
    new, changes = migrate_text(text)
    assert new.splitlines() == [
        "Schedule.epochs = 10              # ten",
        "source/Solver.lr = 0.1            # a scoped one, module-qualified",
        "Solver.lr_schedule = @Cosine",
        "Trainer.extra_hooks = [@MyHook]",
        "SGDTrainer.lr = 0.5",
        "Data.val_split = None            # 'test' when selecting on test",
        "x = 'Trainer.lr = 3'",
    ]
    assert [c[0] for c in changes] == [1, 2, 3, 6]
    assert migrate_text(text, configurable="SGDTrainer")[0].splitlines()[4] == "Solver.lr = 0.5"


def test_migrate_cli_diff_check_write(tmp_path, capsys):
    path = tmp_path / "old.gin"
    path.write_text("Trainer.batch_size = 8\nTrainer.epochs = 1\n")
    assert migrate_main([str(path)]) == 0
    assert "+Data.batch_size = 8" in capsys.readouterr().out and "Trainer" in path.read_text()  # a diff only
    assert migrate_main(["--check", str(path)]) == 1
    assert migrate_main(["--write", str(path)]) == 0
    assert path.read_text() == "Data.batch_size = 8\nSchedule.epochs = 1\n"
    assert migrate_main(["--check", str(path)]) == 0
    other = tmp_path / "other.gin"
    other.write_text("Trainer.lr = 0.1\n")
    assert migrate_main(["--write", str(other), str(tmp_path / "missing.gin")]) == 2
    assert other.read_text() == "Trainer.lr = 0.1\n"  # nothing written when one file cannot be read


def test_shipped_configs_use_the_groups():
    files = [resolve_config_file(name) for name in list_config_files()]
    files += [os.path.join(REPO, "docs", "examples", "sine_waves.gin")]
    for path in files:
        with open(path, encoding="utf-8") as f:
            assert not migrate_text(f.read())[1], f"{path} still uses flat Trainer.* names"


def test_migrate_console_script_runs(tmp_path):
    (tmp_path / "x.gin").write_text("Trainer.lr = 0.1\n")
    out = subprocess.run([sys.executable, os.path.join(REPO, "tools", "migrate_config.py"), "--check",
                          str(tmp_path / "x.gin")], capture_output=True, text=True)
    assert out.returncode == 1 and "Trainer.lr -> Solver.lr" in out.stdout


def test_every_field_has_one_group():
    assert new_name("epochs") == "Schedule.epochs" and new_name("schedule") == "Solver.lr_schedule"
    assert len(FIELD_GROUP) == 40  # 0.1's 41 flat settings less extra_hooks, which Trainer keeps

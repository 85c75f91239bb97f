"""One command-line surface: every console script names itself in its usage line, spells and
explains the shared config flags the same way, and puts its output where one rule says."""
import argparse
import os
import re
import shlex
import subprocess
import sys

import gin
import pytest

import flexcore.cli as cli
from flexcore.analysis.cli import build_parser as analyze_parser
from flexcore.benchmarks.harness import build_parser as benchmark_parser
from flexcore.compat.original.convert import build_parser as convert_parser
from flexcore.engine.cli import build_parser as train_parser
from flexcore.engine.defaults import TRAIN_EXAMPLES, prepare_run
from flexcore.export.cli import build_parser as export_parser
from flexcore.fitting.experiment import build_parser as fit_kernel_parser
from flexcore.utils.cli_args import default_output_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = {
    "flexcore-train": cli.train_main,
    "flexcore-analyze": cli.analyze_main,
    "flexcore-fit-kernel": cli.fit_kernel_main,
    "flexcore-export": cli.export_main,
    "flexcore-convert-checkpoint": cli.convert_checkpoint_main,
    "flexcore-benchmark": cli.benchmark_main,
    "flexcore-migrate-config": cli.migrate_config_main,
}
# The tools that read gin configs, and their parsers.
CONFIG_TOOLS = {
    "flexcore-train": train_parser,
    "flexcore-analyze": analyze_parser,
    "flexcore-fit-kernel": fit_kernel_parser,
    "flexcore-export": export_parser,
}
SHARED_FLAGS = ("--config-file", "--gin-file", "--gin", "--plugin", "--output-dir")


def test_setup_installs_every_command_of_the_table():
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        installed = dict(re.findall(r'"(flexcore-[\w-]+)=flexcore\.cli:(\w+)"', f.read()))
    assert installed == {name: fn.__name__ for name, fn in ENTRY.items()}
    assert set(cli.COMMANDS) == set(ENTRY)
    for name, (module, script) in cli.COMMANDS.items():
        with open(os.path.join(REPO, "tools", script), encoding="utf-8") as f:
            assert f"from {module} import main" in f.read(), f"tools/{script} does not run {name}'s main"


@pytest.mark.parametrize("name", sorted(ENTRY))
def test_help_names_the_program_and_the_shared_flags(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"/some/bin/{name}"])
    with pytest.raises(SystemExit) as exit_info:
        ENTRY[name](["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: {name} "), out.splitlines()[0]
    assert "tools/" not in out.splitlines()[0]
    expected = SHARED_FLAGS if name in CONFIG_TOOLS else ("--output-dir",) if "convert" in name else ()
    for flag in expected:
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}[\s,\]]", out), f"{name} --help lacks {flag}"


def test_benchmark_subcommand_usage_names_the_program(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["flexcore-benchmark"])
    with pytest.raises(SystemExit):
        cli.benchmark_main(["layers", "--help"])
    assert capsys.readouterr().out.startswith("usage: flexcore-benchmark layers ")


def _action(parser, flag):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_shared_flags_are_the_same_everywhere():
    parsers = {name: build() for name, build in CONFIG_TOOLS.items()}
    parsers["flexcore-convert-checkpoint"] = convert_parser()
    for flag, dest in (("--config-file", "config_files"), ("--gin", "bindings"), ("--plugin", "plugins")):
        actions = {name: _action(p, flag) for name, p in parsers.items() if name in CONFIG_TOOLS}
        assert {a.dest for a in actions.values()} == {dest}
        assert len({(tuple(a.option_strings), a.metavar) for a in actions.values()}) == 1
        if flag != "--config-file":  # its help ends with the tool's default config (or "Required")
            assert len({a.help for a in actions.values()}) == 1, {n: a.help for n, a in actions.items()}
    config_helps = {_action(p, "--config-file").help.rsplit(". ", 1)[0] for n, p in parsers.items() if n in CONFIG_TOOLS}
    assert len(config_helps) == 1
    benchmarks = next(a for a in benchmark_parser()._actions if isinstance(a, argparse._SubParsersAction))
    quick_start = benchmarks.choices["quickstart"]
    assert _action(quick_start, "--gin").help == _action(parsers["flexcore-train"], "--gin").help
    parsers["flexcore-benchmark quickstart"] = quick_start
    parsers["flexcore-benchmark convergence"] = benchmarks.choices["convergence"]
    outputs = [_action(p, "--output-dir") for p in parsers.values()]
    assert {a.dest for a in outputs} == {"output_dir"} and {a.metavar for a in outputs} == {"DIR"}
    assert all(a.help.startswith("folder for the ") for a in outputs)


def test_old_spellings_keep_working():
    assert train_parser().parse_args(["--gin-file", "a.gin"]).config_files == ["a.gin"]
    assert analyze_parser().parse_args(["--gin-file", "a.gin", "--output", "o"]).output_dir == "o"
    assert export_parser().parse_args(["--config-file", "a.gin", "--weights", "w", "--output", "o"]).output_dir == "o"


def test_installed_script_names_itself():
    script = os.path.join(os.path.dirname(sys.executable), "flexcore-fit-kernel")
    if not os.path.exists(script):
        pytest.skip("flexcore is not pip-installed in this interpreter's environment")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: flexcore-fit-kernel ")
    assert "--config-file FILE, --gin-file FILE" in result.stdout


def _examples():
    lines = [line.split("#")[0].strip() for line in TRAIN_EXAMPLES.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("%(prog)s")]


def test_train_help_ends_with_runnable_examples(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["flexcore-train"])
    with pytest.raises(SystemExit):
        cli.train_main(["--help"])
    out = capsys.readouterr().out
    tail = out[out.index("examples"):]
    assert "flexcore-train --config-file quick/digits_flexnet.gin" in tail and "%(prog)" not in tail
    monkeypatch.chdir(tmp_path)
    examples = _examples()
    assert len(examples) >= 6
    for argv in examples:
        train_parser().parse_args(argv)  # every flag and value exists
        launches = {"--num-processes", "--sweep", "--list"} & set(argv)
        if launches:
            continue
        # Composing each example's config and bindings proves the names in it are real.
        gin.clear_config()
        assert cli.train_main([*argv, "--print-config"]) == 0, argv
    assert cli.train_main(["--list", "*cifar*"]) == 0 and "cifar10/flexnet7.gin" in capsys.readouterr().out
    assert not (tmp_path / "output").exists()


def test_default_output_dir_rule():
    assert default_output_dir(["cifar10/flexnet7.gin"]) == os.path.join("output", "cifar10_flexnet7")
    assert default_output_dir(["base.gin", "cifar10/flexnet7.gin"], tool="analysis") == \
        os.path.join("output", "analysis", "cifar10_flexnet7")
    assert default_output_dir([os.path.abspath("x/my_run.gin")], tool="export") == os.path.join("output", "export", "my_run")
    assert default_output_dir([], tool="fit_kernel") == os.path.join("output", "fit_kernel", "experiment")


def test_every_tool_puts_its_output_where_the_rule_says(tmp_path, monkeypatch, single_thread):
    """Real runs from an empty folder: the same config name under output/[<tool>/]."""
    from flexcore.analysis.cli import load_analysis_setup
    from flexcore.checkpoint import Checkpointer
    from flexcore.config import parse_config

    monkeypatch.chdir(tmp_path)
    config = "quick/digits_flexnet.gin"
    assert prepare_run(train_parser().parse_args(["--config-file", config])) == os.path.join("output", "quick_digits_flexnet")
    gin.clear_config()
    assert cli.analyze_main(["--config-file", config, "--fake-data", "--tasks", "params"]) == 0
    assert os.listdir(tmp_path / "output" / "analysis" / "quick_digits_flexnet")

    gin.clear_config()
    parse_config([config], finalize=False)
    Checkpointer(load_analysis_setup(True).build_model(), save_dir=str(tmp_path)).save("model_init")
    gin.clear_config()
    assert cli.export_main(["--config-file", config, "--weights", "model_init.pth", "--fake-data",
                            "--formats", "torchscript", "--num-samples", "2"]) == 0
    assert (tmp_path / "output" / "export" / "quick_digits_flexnet" / "export.json").exists()

    gin.clear_config()
    assert cli.fit_kernel_main(["--kernel-nets", "SIREN", "--targets", "gabor", "--freqs", "1", "--size", "9",
                                "--iterations", "2", "--gin", "fit_kernels.save_images = False"]) == 0
    assert (tmp_path / "output" / "fit_kernel" / "kernel_fitting_gabor" / "results.csv").exists()
    assert sorted(os.listdir(tmp_path / "output")) == ["analysis", "export", "fit_kernel"]

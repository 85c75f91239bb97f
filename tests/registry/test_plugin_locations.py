"""Plugins and includes where users keep them: real CLI runs from a folder outside the repo.

``my_kernels.py`` in the working directory or beside the gin file that imports it,
``include 'sibling.gin'`` beside the including file, one clean error for a broken plugin in
every tool, and a misspelt dataset name caught before anything is written.
"""
import os
import subprocess
import sys

import pytest

from flexcore.config import parse_config
from flexcore.registry import PluginError, load_plugin
from plugin_sources import PLUGIN_SRC
from plugin_sources import unique_name as _unique

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")


def _tool(script, cwd, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, os.path.join(TOOLS, script), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )


@pytest.mark.slow
def test_plugin_module_in_the_working_directory(tmp_path):
    mod, cls = _unique("my_kernels_"), _unique("CwdNet")
    (tmp_path / f"{mod}.py").write_text(PLUGIN_SRC.format(cls=cls))
    run = _tool("train_net.py", tmp_path, "--plugin", mod, "--print-config", "--gin", f"FlexConv.kernel_net = @{cls}")
    assert run.returncode == 0, run.stderr
    assert f"FlexConv.kernel_net = @{cls}" in run.stdout


@pytest.mark.slow
def test_gin_import_and_include_beside_the_gin_file(tmp_path):
    configs, elsewhere = tmp_path / "configs", tmp_path / "elsewhere"
    configs.mkdir()
    elsewhere.mkdir()
    mod, cls = _unique("cfg_kernels_"), _unique("BesideNet")
    (configs / f"{mod}.py").write_text(PLUGIN_SRC.format(cls=cls))
    (configs / "exp.gin").write_text(
        f"import {mod}\ninclude 'quick/digits_flexnet.gin'\ninclude 'sibling.gin'\n"
    )
    (configs / "sibling.gin").write_text(f"FlexConv.kernel_net = @{cls}\nMAGNet.hidden_channels = 7\n")
    # A same-named file in the working directory loses to the one beside the includer.
    (elsewhere / "sibling.gin").write_text("MAGNet.hidden_channels = 99\n")
    run = _tool("train_net.py", elsewhere, "--config-file", "../configs/exp.gin", "--print-config")
    assert run.returncode == 0, run.stderr
    assert f"FlexConv.kernel_net = @{cls}" in run.stdout
    assert "MAGNet.hidden_channels = 7" in run.stdout and "= 99" not in run.stdout


def test_missing_plugin_module_names_the_folders_and_pythonpath(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError) as err:
        load_plugin(_unique("absent_kernels_"))
    assert "PYTHONPATH" in str(err.value) and repr(str(tmp_path)) in str(err.value)
    gin_dir = tmp_path / "cfg"
    gin_dir.mkdir()
    missing = _unique("absent_gin_kernels_")
    (gin_dir / "exp.gin").write_text(f"import {missing}\n")
    with pytest.raises(PluginError) as err:
        parse_config([str(gin_dir / "exp.gin")], finalize=False)
    msg = str(err.value)
    assert "PYTHONPATH" in msg and repr(str(gin_dir)) in msg and "exp.gin, line 1" in msg


def test_gin_import_of_a_module_beside_the_gin_file_in_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the found folder is appended to sys.path
    gin_dir = tmp_path / "cfg"
    gin_dir.mkdir()
    mod, cls = _unique("beside_"), _unique("InProcNet")
    (gin_dir / f"{mod}.py").write_text(PLUGIN_SRC.format(cls=cls))
    (gin_dir / "exp.gin").write_text(f"import {mod}\nFlexConv.kernel_net = @{cls}\n")
    parse_config([str(gin_dir / "exp.gin")], finalize=False)
    assert sys.modules[mod].__file__ == str(gin_dir / f"{mod}.py")


@pytest.mark.slow
@pytest.mark.parametrize("script, extra", [
    ("train_net.py", ["--print-config"]),
    ("analyze_model.py", ["--config-file", "quick/digits_flexnet.gin", "--fake-data"]),
    ("fit_kernel.py", []),
])
def test_broken_plugin_is_one_clean_error_in_every_tool(tmp_path, script, extra):
    mod = _unique("broken_kernels_")
    (tmp_path / f"{mod}.py").write_text("def oops():\n    return 1 / 0\n\noops()\n")
    run = _tool(script, tmp_path, "--plugin", mod, *extra)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("Plugin error:") == 1
    assert run.stderr.count("Traceback (most recent call last)") == 1  # the plugin's own
    assert "ZeroDivisionError" in run.stderr and mod in run.stderr
    assert sorted(os.listdir(tmp_path)) == [f"{mod}.py"]  # no output folder written


@pytest.mark.slow
def test_unknown_dataset_fails_before_the_output_dir_and_in_print_config(tmp_path):
    binding = "Data.dataset = 'MNIST1DD'"
    for extra in (["--print-config"], ["--output-dir", str(tmp_path / "out")]):
        run = _tool("train_net.py", tmp_path, "--gin", binding, *extra)
        assert run.returncode == 2, run.stderr
        assert "No object named 'MNIST1DD' in the 'datasets' registry." in run.stderr
        assert "Did you mean 'MNIST'" in run.stderr
        assert "Traceback" not in run.stderr
    assert os.listdir(tmp_path) == []


def test_dataset_name_through_a_macro_is_checked_too():
    import gin

    from flexcore.config import ConfigError
    from flexcore.engine.trainer_config import check_bindings

    parse_config([], ["DATASET = 'MNIST1DD'", "Data.dataset = %DATASET"], finalize=False)
    with pytest.raises(ConfigError, match="Did you mean 'MNIST'"):
        check_bindings()
    gin.clear_config()
    parse_config([], ["Data.dataset = 'Digits'"], finalize=False)
    check_bindings()  # a registered name passes

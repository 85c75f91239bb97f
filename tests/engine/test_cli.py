import os
import subprocess
import sys
import textwrap

from flexcore.config import list_config_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")

PLUGIN = textwrap.dedent(
    """
    import gin

    @gin.configurable
    def cli_model(width=1, kind='a'):
        return width
    """
)


def run(args, cwd):
    return subprocess.run([sys.executable, TRAIN_NET, *args], capture_output=True, text=True, cwd=cwd)


def test_list_prints_shipped_configs(tmp_path):
    result = run(["--list"], tmp_path)
    assert result.returncode == 0, result.stderr
    for name in list_config_files():
        assert name in result.stdout


def test_print_config_composes_without_building(tmp_path):
    (tmp_path / "cli_plugin.py").write_text(PLUGIN)
    (tmp_path / "exp.gin").write_text("cli_model.width = 12\n")
    result = run(
        ["--plugin", "cli_plugin.py", "--config-file", "exp.gin", "--gin", "cli_model.kind = 'b'", "--print-config"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "cli_model.width = 12" in result.stdout
    assert "cli_model.kind = 'b'" in result.stdout
    assert not (tmp_path / "output").exists()


def test_misspelt_configurable_exits_with_hint(tmp_path, capsys, monkeypatch):
    from flexcore.engine.cli import main as cli_main

    # In this process: the script is a thin wrapper of flexcore.engine.cli.main (the tests above run it for real).
    (tmp_path / "misspelt_cli_plugin.py").write_text(PLUGIN.replace("cli_model", "cli_model_misspelt"))
    (tmp_path / "exp.gin").write_text("cli_modle_misspelt.width = 12\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["--plugin", "misspelt_cli_plugin.py", "--config-file", "exp.gin", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'cli_model_misspelt'" in err
    assert "exp.gin" in err and "line 1" in err


def test_broken_plugin_names_itself_with_its_traceback(tmp_path, capsys, monkeypatch):
    from flexcore.engine.cli import main as cli_main

    (tmp_path / "broken_cli_plugin.py").write_text("import math\nraise RuntimeError('plugin boom')\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["--plugin", "broken_cli_plugin.py", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Plugin error: Failed to load flexcore plugin 'broken_cli_plugin.py'")
    assert 'broken_cli_plugin.py", line 2' in err and "plugin boom" in err  # the plugin's own frame
    assert "defaults.py" not in err  # no second traceback through flexcore's launcher

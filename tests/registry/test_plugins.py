import subprocess
import sys

import pytest

from flexcore.registry import KERNEL_NETS, PluginError, load_plugin, load_plugins
from plugin_sources import PLUGIN_SRC
from plugin_sources import unique_name as _unique


def test_plugin_from_module(tmp_path, monkeypatch):
    mod, cls = _unique("plugmod_"), _unique("PlugNet")
    (tmp_path / f"{mod}.py").write_text(PLUGIN_SRC.format(cls=cls))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins([mod], entry_points=False)
    assert cls in KERNEL_NETS


def test_plugin_from_py_path_loads_once(tmp_path):
    cls = _unique("PathNet")
    path = tmp_path / "my_kernels.py"
    path.write_text(PLUGIN_SRC.format(cls=cls))
    first = load_plugin(str(path))
    second = load_plugin(str(path))
    assert first is second
    assert KERNEL_NETS.get_raw(cls).__module__ == first.__name__


def test_broken_plugin_names_itself_and_shows_traceback(tmp_path):
    path = tmp_path / "broken_plugin.py"
    path.write_text("import math\n\ndef oops():\n    return 1 / 0\n\noops()\n")
    with pytest.raises(PluginError) as err:
        load_plugin(str(path))
    msg = str(err.value)
    assert "broken_plugin.py" in msg
    assert "ZeroDivisionError" in msg
    assert "Traceback" in msg and "oops" in msg


def test_missing_plugin_module_says_how_to_fix():
    with pytest.raises(PluginError, match="no_such_plugin_pkg"):
        load_plugin("no_such_plugin_pkg.kernels")


def _make_dist(site, dist, module, body):
    (site / f"{module}.py").write_text(body)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[flexcore.plugins]\n{dist} = {module}\n")


def test_plugin_from_installed_entry_point(tmp_path, monkeypatch):
    dist, module, cls = _unique("distok"), _unique("epmod_"), _unique("EntryNet")
    _make_dist(tmp_path, dist, module, PLUGIN_SRC.format(cls=cls))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins()
    assert cls in KERNEL_NETS


def test_broken_entry_point_names_package(tmp_path, monkeypatch):
    dist, module = _unique("distbad"), _unique("epbad_")
    _make_dist(tmp_path, dist, module, "raise RuntimeError('plugin exploded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as err:
        load_plugins()
    assert dist in str(err.value)
    assert "plugin exploded" in str(err.value)


def test_registry_cli_lists_plugin(tmp_path, capsys):
    from flexcore.registry.__main__ import main

    cls = _unique("CliNet")
    path = tmp_path / "cli_plugin.py"
    path.write_text(PLUGIN_SRC.format(cls=cls))
    out = subprocess.run(
        [sys.executable, "-m", "flexcore.registry", "list", "kernel_nets", "--plugin", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert cls in out and "Test plugin kernel net." in out and "| name" in out
    # The entry point ran for real above; the error path in-process (a fresh interpreter costs seconds).
    assert main(["list", "no_such_family"]) == 2
    assert "kernel_nets" in capsys.readouterr().err


def test_registry_cli_wildcards_over_families_and_within_one(capsys):
    from flexcore.registry.__main__ import main

    assert main(["list", "*gabor*"]) == 0  # a pattern in place of the family: every family
    out = capsys.readouterr().out
    assert "kernel_nets:" in out and "GaborNet" in out and "MAGNet" not in out
    assert "datasets:" not in out  # families without a match are left out
    assert main(["list", "kernel_nets", "*siren*"]) == 0
    out = capsys.readouterr().out
    assert "SIREN" in out and "nSIREN" in out and "GaborNet" not in out
    assert "flexcore.layers.kernels.siren:SIREN" in out  # the "defined in" column


def test_registry_cli_broken_plugin_is_a_clean_error(tmp_path, capsys):
    from flexcore.registry.__main__ import main

    path = tmp_path / "cli_broken_plugin.py"
    path.write_text("raise RuntimeError('cli plugin exploded')\n")
    assert main(["list", "--plugin", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Plugin error:") and "cli_broken_plugin.py" in err
    assert "cli plugin exploded" in err and "Traceback of the plugin import" in err

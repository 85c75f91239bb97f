import os
import textwrap
import uuid

import gin
import pytest

from flexcore.config import ConfigError, parse_config, resolve_config_file, write_config_files
from flexcore.registry import PluginError

_MOD = f"cfgtest_{uuid.uuid4().hex[:6]}"


@gin.configurable(module=_MOD)
def make_model(width=1, depth=1, act="relu"):
    return {"width": width, "depth": depth, "act": act}


@gin.configurable(module=_MOD)
def make_split(split="train", size=0):
    return (split, size)


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_include_macros_scopes_and_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "base.gin", """
        WIDTH = 8
        make_model.width = %WIDTH
        make_model.depth = 2
        """)
    child = _write(tmp_path / "child.gin", """
        include 'base.gin'
        make_model.depth = 3          # overrides the parent
        train/make_split.split = 'train'
        test/make_split.split = 'test'
        make_split.size = 4
        """)
    parse_config([child], ["WIDTH = 16", "make_model.act = 'gelu'"], finalize=False)
    assert make_model() == {"width": 16, "depth": 3, "act": "gelu"}
    with gin.config_scope("train"):
        assert make_split() == ("train", 4)
    with gin.config_scope("test"):
        assert make_split() == ("test", 4)


def test_operative_config_round_trip(tmp_path):
    cfg = _write(tmp_path / "exp.gin", """
        make_model.width = 32
        make_model.act = 'swish'
        """)
    parse_config([cfg], ["make_model.depth = 5"], finalize=False)
    first = make_model()
    written = write_config_files(str(tmp_path / "out"))
    assert [os.path.basename(p) for p in written] == ["config.gin", "operative_config.gin"]
    gin.clear_config()
    assert make_model() == {"width": 1, "depth": 1, "act": "relu"}
    parse_config([str(tmp_path / "out" / "operative_config.gin")], finalize=False)
    assert make_model() == first
    gin.clear_config()
    parse_config([str(tmp_path / "out" / "config.gin")], finalize=False)
    assert make_model() == first


def test_misspelt_configurable_suggests(tmp_path):
    cfg = _write(tmp_path / "typo.gin", "make_modle.width = 3\n")
    with pytest.raises(ConfigError) as err:
        parse_config([cfg])
    msg = str(err.value)
    assert "typo.gin" in msg and "line 1" in msg
    assert "Did you mean 'make_model'" in msg


def test_misspelt_parameter_lists_parameters():
    with pytest.raises(ConfigError) as err:
        parse_config([], ["make_model.widht = 3"])
    msg = str(err.value)
    assert "Did you mean 'width'" in msg and "width, depth, act" in msg


def test_syntax_error_names_the_file(tmp_path):
    good = _write(tmp_path / "good.gin", "make_model.width = 2\n")
    bad = _write(tmp_path / "bad.gin", "make_model.width = (1,\n")
    with pytest.raises(ConfigError, match="bad.gin"):
        parse_config([good, bad])


def test_missing_file_lists_search_paths():
    with pytest.raises(ConfigError) as err:
        resolve_config_file("no/such/config.gin")
    assert "gin_configs" in str(err.value) and "--list" in str(err.value)


def test_gin_import_line_loads_plugin(tmp_path, monkeypatch):
    mod = f"ginplug_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{mod}.py").write_text(
        "import gin\n@gin.configurable\ndef plugged(v=0):\n    return v\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _write(tmp_path / "p.gin", f"import {mod}\nplugged.v = 9\n")
    parse_config([cfg], finalize=False)
    assert gin.get_configurable("plugged")() == 9


def test_broken_gin_import_names_file_line_and_plugin(tmp_path, monkeypatch):
    mod = f"ginbroken_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{mod}.py").write_text("raise ValueError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _write(tmp_path / "imports.gin", f"\nimport {mod}\n")
    with pytest.raises(PluginError) as err:
        parse_config([cfg])
    msg = str(err.value)
    assert mod in msg and "broken on purpose" in msg and "imports.gin, line 2" in msg


@gin.configurable(module=_MOD)
def make_layer(size=3, outer=None):
    if size % 2 == 0:
        raise ValueError(f"make_layer: size must be odd, got {size}")
    return size


@gin.configurable(module=_MOD)
def make_stack(layer=None):
    return layer()


def test_build_error_names_the_binding_through_include_macro_and_scope(tmp_path, monkeypatch):
    from flexcore.config import binding_origins, explain_build_error

    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "base.gin", """
        SIZE = 5
        make_layer.size = %SIZE
        """)
    child = _write(tmp_path / "child.gin", """
        include 'base.gin'
        SIZE = 7                      # the later binding is the one in force
        big/make_layer.size = %BIG
        BIG = %SIZE
        make_stack.layer = @big/make_layer
        """)
    parse_config([child], ["SIZE = 8"])
    origins = binding_origins()
    assert origins[("", "%SIZE", "")][:2] == ("SIZE = 8", "--gin")
    assert origins[("big", f"{_MOD}.make_layer", "size")][1] == "child.gin, line 4"
    with pytest.raises(ValueError) as info:
        make_stack()
    message = explain_build_error(info.value)
    assert message.splitlines() == [
        "make_layer: size must be odd, got 8",
        "  big/make_layer.size = %BIG  (child.gin, line 4)",  # the scoped binding beats base.gin's
        "  BIG = %SIZE  (child.gin, line 5)",
        "  SIZE = 8  (--gin)",
        "  raised while building make_layer (scope big) < make_stack",
    ]
    assert explain_build_error(ValueError("not from gin")) is None

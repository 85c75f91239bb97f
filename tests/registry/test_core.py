import re
import sys
import textwrap
import uuid

import gin
import pytest
import torch.nn as nn

from flexcore.registry import DuplicateNameError, Registry, UnknownNameError


@pytest.fixture(autouse=True)
def forget_test_registries_in_gin():
    """Registries made here are throwaway; drop their gin configurables so a later
    ``@FlexNet`` in another test is not ambiguous with ``test_xxxx.FlexNet``."""
    yield
    from gin import config as gin_config

    # Only the throwaway registries' names (test_<8 hex>.X): test modules' own configurables
    # (e.g. test_conv_defaults.defaults_test_build) also start with "test_".
    throwaway = re.compile(r"(^|\.)test_[0-9a-f]{8}\.")
    for selector in [s for s in list(gin_config._REGISTRY._selector_map) if throwaway.search(s)]:
        gin_config._REGISTRY.pop(selector)


def fresh(**kw) -> Registry:
    return Registry(f"test_{uuid.uuid4().hex[:8]}", contract="factory(a) -> object", **kw)


def test_register_get_build_and_gin_binding():
    reg = fresh(base_type=nn.Module)

    @reg.register()
    class Block(nn.Module):
        """A block."""

        def __init__(self, width: int = 1):
            super().__init__()
            self.width = width

    assert reg.get_raw("Block") is Block
    assert reg.build("Block", width=3).width == 3
    gin.parse_config(f"{reg._name}.Block.width = 7")
    # name lookup and @Name resolve to the same gin-bound callable
    assert reg.get("Block")().width == 7
    assert isinstance(reg.get("Block")(), Block)


def test_at_reference_in_gin_uses_registry_module():
    reg = fresh()

    @reg.register()
    def make_thing(value=0):
        return ("thing", value)

    @gin.configurable(module=f"{reg._name}_consumers")
    def consumer(factory=None):
        return factory()

    gin.parse_config(
        textwrap.dedent(
            f"""
            consumer.factory = @{reg._name}.make_thing
            make_thing.value = 5
            """
        )
    )
    assert consumer() == ("thing", 5)


def test_duplicate_names_both_definitions():
    reg = fresh()

    def first():
        pass

    reg.register(first, name="thing")

    def second():
        pass

    with pytest.raises(DuplicateNameError) as err:
        reg.register(second, name="thing")
    msg = str(err.value)
    assert "test_core:test_duplicate_names_both_definitions.<locals>.second" in msg
    assert "test_core:test_duplicate_names_both_definitions.<locals>.first" in msg


def test_identical_reregister_is_noop():
    reg = fresh()

    def thing():
        return 1

    reg.register(thing)
    reg.register(thing)
    assert reg.list() == ["thing"]


def test_unknown_name_suggests_and_explains():
    reg = fresh()
    for name in ["SIREN", "nSIREN", "MAGNet", "MLP"]:
        reg.register(type(name, (), {"__doc__": name}), name=name)
    with pytest.raises(UnknownNameError) as err:
        reg.get("SIRNE")
    msg = str(err.value)
    assert isinstance(err.value, KeyError)
    assert reg._name in msg
    assert "Did you mean 'SIREN'" in msg
    assert "Registered: MAGNet, MLP, nSIREN, SIREN" in msg
    assert "--plugin" in msg


def test_lookup_forgives_case_and_supports_aliases():
    reg = fresh()

    class MAGNet:
        pass

    reg.register(MAGNet, aliases=["magnet_v1"])
    assert reg.get_raw("magnet") is MAGNet
    assert reg.get_raw("magnet_v1") is MAGNet
    assert "magnet_v1" in reg


def test_list_wildcards_case_insensitive_natural_order_and_exclude():
    reg = fresh()
    for name in ["resnet110", "resnet20", "ResNet32", "FlexNet", "GaborNet", "MFNGabor"]:
        reg.register(type(name, (), {}), name=name)
    assert reg.list("resnet*") == ["resnet20", "ResNet32", "resnet110"]
    assert reg.list("*GABOR*") == ["GaborNet", "MFNGabor"]
    assert reg.list("*net*", exclude="resnet*") == ["FlexNet", "GaborNet"]
    assert reg.list(["flex*", "mfn*"]) == ["FlexNet", "MFNGabor"]


def test_build_checks_base_type():
    reg = fresh(base_type=nn.Module)
    reg.register(lambda: object(), name="not_a_module")
    with pytest.raises(TypeError, match="expected an instance of Module"):
        reg.build("not_a_module")


def test_builtins_are_imported_on_first_lookup(tmp_path, monkeypatch):
    name = f"test_{uuid.uuid4().hex[:8]}"
    module = f"builtin_mod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from flexcore.registry import all_registries
            REG = all_registries()[{name!r}]

            @REG.register()
            class Builtin:
                '''Shipped with the library.'''
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry(name, builtins=[module])
    assert module not in sys.modules
    assert reg.list() == ["Builtin"]  # not "not found" because nothing imported it
    assert module in sys.modules


def test_table_rows_show_definition_and_doc():
    reg = fresh()

    class Documented:
        """First line shows.

        Second paragraph does not."""

    reg.register(Documented)
    ((name, where, doc),) = reg.table_rows()
    assert name == "Documented"
    assert where.endswith("test_core:test_table_rows_show_definition_and_doc.<locals>.Documented")
    assert doc == "First line shows."
    assert "Documented" in repr(reg)


def test_alias_is_the_same_gin_configurable():
    reg = fresh()

    @reg.register(aliases=["Alt"])
    def make_thing(value=0):
        return ("thing", value)

    gin.parse_config(f"{reg._name}.Alt.value = 4")  # bound through the alias ...
    assert reg.get("make_thing")() == ("thing", 4)  # ... applies to the canonical name
    assert reg.get("Alt") is reg.get("make_thing")
    assert gin.get_configurable(f"{reg._name}.Alt") is reg.get("make_thing")  # `@Alt` in gin
    assert "make_thing.value = 4" in gin.config_str() and ".Alt." not in gin.config_str()

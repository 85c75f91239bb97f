"""The Registry class: fvcore's name -> object map, bridged to gin, with contracts.

Every registered object is also a gin configurable in a module named after its
registry, so ``@MAGNet`` (or ``@kernel_nets.MAGNet``) in a gin file and
``KERNEL_NETS.get("MAGNet")`` in Python return the same gin-bound callable.
"""
from __future__ import annotations

import contextlib
import contextvars
import difflib
import fnmatch
import functools
import importlib
import inspect
import re
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import gin
from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = [
    "Registry", "UnknownNameError", "DuplicateNameError", "all_registries", "qualified_name",
    "building_from_config",
]

# name -> Registry, in creation order; lets the CLI and `list` enumerate families. Weak, so
# short-lived registries (tests, notebooks) vanish with their last reference.
_ALL_REGISTRIES: "weakref.WeakValueDictionary[str, Registry]" = weakref.WeakValueDictionary()

PLUGIN_HINT = (
    "To use a component defined outside flexcore, load the module that registers it: "
    "`--plugin your_pkg.module` (or a path to a .py file) on the command line, an "
    "`import your_pkg.module` line at the top of the gin file, or an installed package "
    "that declares a `flexcore.plugins` entry point."
)


# True while a component built through gin (``@Name``) or ``Registry.get``/``build`` is being
# constructed: the default sub-components it picks then come from the registry too, so gin
# bindings apply to them the same way. A class called directly never reads gin.
_FROM_CONFIG: contextvars.ContextVar[bool] = contextvars.ContextVar("flexcore_from_config", default=False)


def building_from_config() -> bool:
    """Whether the component now being constructed was reached through gin or the registry."""
    return _FROM_CONFIG.get()


@contextlib.contextmanager
def _from_config():
    token = _FROM_CONFIG.set(True)
    try:
        yield
    finally:
        _FROM_CONFIG.reset(token)


def _mark_config_builds(selector: str) -> None:
    """Make calls through gin's configurable for ``selector`` set :func:`building_from_config`."""
    from gin import config as gin_config

    entry = gin_config._REGISTRY[selector]  # noqa: SLF001 - gin exposes no call hook
    wrapper = entry.wrapper
    if inspect.isclass(wrapper):
        # gin's registered class is a fresh subclass with its own metaclass: patch only that.
        meta = type(wrapper)
        gin_call = meta.__call__

        @functools.wraps(gin_call)
        def call_from_config(cls, *args, **kwargs):
            with _from_config():
                return gin_call(cls, *args, **kwargs)

        meta.__call__ = call_from_config
    else:
        @functools.wraps(wrapper)
        def fn_from_config(*args, **kwargs):
            with _from_config():
                return wrapper(*args, **kwargs)

        gin_config._REGISTRY[selector] = entry._replace(wrapper=fn_from_config)  # noqa: SLF001


class UnknownNameError(KeyError):
    """A name was looked up that no loaded module registered."""

    def __str__(self) -> str:  # KeyError would repr() the message and show quotes + \n
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(ValueError):
    """Two different objects were registered under the same name."""


def qualified_name(obj: Any) -> str:
    """``module:qualname`` of a class or function, for messages and tables."""
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    return f"{module}:{qualname}"


def _natural_key(text: str) -> List[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(_FvcoreRegistry):
    """A named family of components (kernel nets, masks, convolutions, ...).

    Args:
        name: the family's name, e.g. ``"kernel_nets"``; also the gin module of
            every object registered here (``@kernel_nets.MAGNet``).
        contract: one line saying how members are built and what they return.
        base_type: if given, ``build`` checks the built object is an instance.
        builtins: modules imported on first lookup, so a built-in component is
            never "not found" because nothing imported it yet.
    """

    def __init__(
        self,
        name: str,
        contract: str = "",
        base_type: Optional[type] = None,
        builtins: Sequence[str] = (),
    ) -> None:
        super().__init__(name)
        if name in _ALL_REGISTRIES:
            raise DuplicateNameError(f"A registry named {name!r} already exists.")
        self.contract = contract
        self.base_type = base_type
        self.builtins: Tuple[str, ...] = tuple(builtins)
        self._builtins_loaded = False
        self._loading_builtins = False
        self._aliases: Dict[str, str] = {}
        _ALL_REGISTRIES[name] = self

    # -- registration ---------------------------------------------------------------
    def register(self, obj: Any = None, *, name: Optional[str] = None, aliases: Iterable[str] = ()):
        """Register ``obj`` (decorator or call) and make it a gin configurable.

        ``@REG.register()``, ``@REG.register(name="X")`` and ``REG.register(obj)``
        all work. Re-registering the identical object is a no-op.
        """
        aliases = tuple(aliases)

        def do_register(target: Any) -> Any:
            key = name or target.__name__
            self._add(key, target, gin_name=key)
            for alias in aliases:
                self._check_free(alias, target)
                self._aliases[alias] = key
                self._add_gin_alias(alias, key)
            return target

        if obj is None:
            return do_register
        return do_register(obj)

    def _check_free(self, key: str, target: Any) -> bool:
        """True if ``key`` is free, False if it already holds ``target``; else raises."""
        existing = self._obj_map.get(key)
        if existing is None and key in self._aliases:
            existing = self._obj_map[self._aliases[key]]
        if existing is None:
            return True
        if existing is target:
            return False
        raise DuplicateNameError(
            f"Cannot register {qualified_name(target)} as {key!r} in registry {self._name!r}: "
            f"that name is already taken by {qualified_name(existing)}. "
            f"Pick another name (register(name=...)) or remove one of the two definitions."
        )

    def _add(self, key: str, target: Any, gin_name: str) -> None:
        if not self._check_free(key, target):
            return
        gin.register(gin_name, module=self._name)(target)
        _mark_config_builds(f"{self._name}.{gin_name}")
        self._obj_map[key] = target

    def _add_gin_alias(self, alias: str, key: str) -> None:
        """Make ``@alias`` in gin the same configurable as ``@key``.

        gin has no aliases, so the alias selector points at the canonical entry of gin's
        registry: a binding ``alias.x = 1`` is stored under ``key`` and applies however the
        component is referenced, just as ``get(alias)`` returns the canonical callable.
        """
        from gin import config as gin_config

        registry = gin_config._REGISTRY  # noqa: SLF001 - gin has no public alias API
        alias_selector = f"{self._name}.{alias}"
        if alias_selector not in registry:
            registry[alias_selector] = registry[f"{self._name}.{key}"]

    # -- lookup ---------------------------------------------------------------------
    def _ensure_builtins(self) -> None:
        if self._builtins_loaded or self._loading_builtins:
            return
        self._loading_builtins = True
        try:
            for module in self.builtins:
                importlib.import_module(module)
            self._builtins_loaded = True
        finally:
            self._loading_builtins = False

    def _resolve(self, name: str) -> str:
        self._ensure_builtins()
        if name in self._obj_map:
            return name
        if name in self._aliases:
            return self._aliases[name]
        lowered = {k.lower(): k for k in self._obj_map}
        if name.lower() in lowered:  # forgive case: "magnet" -> "MAGNet"
            return lowered[name.lower()]
        raise UnknownNameError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        names = sorted(list(self._obj_map) + list(self._aliases), key=_natural_key)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        close += [n for n in names if name.lower() in n.lower() and n not in close][:3]
        lines = [f"No object named {name!r} in the {self._name!r} registry."]
        if close:
            lines.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
        lines.append("Registered: " + (", ".join(names) if names else "(none)") + ".")
        lines.append(PLUGIN_HINT)
        return "\n".join(lines)

    def get_raw(self, name: str) -> Any:
        """The registered object itself (not gin-bound)."""
        return self._obj_map[self._resolve(name)]

    def get(self, name: str) -> Callable[..., Any]:
        """The gin-bound callable registered as ``name`` (same as ``@name`` in gin)."""
        key = self._resolve(name)
        return gin.get_configurable(f"{self._name}.{key}")

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the gin-bound factory ``name`` and check the result's type."""
        obj = self.get(name)(*args, **kwargs)
        if self.base_type is not None and not isinstance(obj, self.base_type):
            raise TypeError(
                f"{self._name} factory {name!r} ({qualified_name(self.get_raw(name))}) returned "
                f"{type(obj).__name__}, expected an instance of {self.base_type.__name__}. "
                f"Contract: {self.contract}"
            )
        return obj

    def __contains__(self, name: object) -> bool:
        self._ensure_builtins()
        return isinstance(name, str) and (name in self._obj_map or name in self._aliases)

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        self._ensure_builtins()
        return iter(sorted(self._obj_map.items(), key=lambda kv: _natural_key(kv[0])))

    def __len__(self) -> int:
        self._ensure_builtins()
        return len(self._obj_map)

    def values(self) -> List[Any]:
        """Registered objects in natural name order."""
        return [obj for _, obj in self]

    def name_of(self, obj: Any) -> Optional[str]:
        """Registered name of ``obj``'s class (or of ``obj``), if any."""
        self._ensure_builtins()
        for key, value in self._obj_map.items():
            if value is obj or (inspect.isclass(value) and isinstance(obj, value) and type(obj) is value):
                return key
        return None

    def list(
        self,
        pattern: str | Sequence[str] = "*",
        exclude: str | Sequence[str] | None = None,
    ) -> List[str]:
        """Registered names matching shell-style wildcards, case-insensitively.

        Args:
            pattern: one pattern or several (a name matching any is kept).
            exclude: pattern(s) removing names from the result.
        """
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        excludes = [] if exclude is None else [exclude] if isinstance(exclude, str) else list(exclude)
        keep = []
        for key, _ in self:
            low = key.lower()
            if any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns) and not any(
                fnmatch.fnmatchcase(low, e.lower()) for e in excludes
            ):
                keep.append(key)
        return keep

    def table_rows(self, pattern: str = "*") -> List[Tuple[str, str, str]]:
        """(name, defined in, first doc line) for each matching entry."""
        rows = []
        for key in self.list(pattern):
            obj = self._obj_map[key]
            rows.append((key, qualified_name(obj), _first_doc_line(obj)))
        return rows

    def __repr__(self) -> str:
        from tabulate import tabulate

        return f"Registry {self._name!r} ({self.contract})\n" + tabulate(
            self.table_rows(), headers=["name", "defined in", "description"], tablefmt="github"
        )

    __str__ = __repr__


def all_registries() -> Dict[str, Registry]:
    """Every registry, by family name, in definition order."""
    return dict(_ALL_REGISTRIES)

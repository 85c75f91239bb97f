"""Plugin loading: installed entry points, ``--plugin`` modules and ``.py`` files.

Plugins are loaded only from what the user names or installs; a plugin that fails to
import raises :class:`PluginError` naming it, with the original traceback chained.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from importlib import metadata
from types import ModuleType
from typing import Dict, Iterable, List, Optional, Sequence

__all__ = ["PluginError", "ENTRY_POINT_GROUP", "load_plugins", "load_plugin", "loaded_plugins"]

ENTRY_POINT_GROUP = "flexcore.plugins"

# plugin spec (module name or resolved file path) -> module, so loading twice is a no-op.
_LOADED: Dict[str, ModuleType] = {}


class PluginError(ImportError):
    """A plugin could not be loaded; the message names it and shows its traceback."""


def _fail(kind: str, spec: str, exc: BaseException, hint: str = "") -> PluginError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    msg = f"Failed to load flexcore plugin {spec!r} ({kind}): {type(exc).__name__}: {exc}\n"
    if hint:
        msg += hint + "\n"
    msg += "Traceback of the plugin import:\n" + tb
    return PluginError(msg)


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _load_file(path: str) -> ModuleType:
    resolved = os.path.realpath(os.path.expanduser(path))
    if resolved in _LOADED:
        return _LOADED[resolved]
    if not os.path.isfile(resolved):
        raise PluginError(
            f"Plugin file {path!r} does not exist (resolved to {resolved!r}). "
            "Pass an existing .py file or an importable module name to --plugin."
        )
    stem = os.path.splitext(os.path.basename(resolved))[0]
    digest = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    module_name = f"flexcore_plugin_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - re-raised with context
        sys.modules.pop(module_name, None)
        raise _fail("file", path, exc) from exc
    _LOADED[resolved] = module
    return module


def _find_in_folders(top: str, folders: Sequence[str]) -> Optional[str]:
    """The first folder holding module or package ``top`` (``top.py`` or ``top/``)."""
    for folder in folders:
        if importlib.machinery.PathFinder.find_spec(top, [folder]) is not None:
            return folder
    return None


def load_plugin(spec: str, search_dirs: Sequence[str] = ()) -> ModuleType:
    """Import one plugin: a dotted module name or a path to a ``.py`` file.

    A module name that ``sys.path`` does not hold is looked for in ``search_dirs`` (e.g. the
    folder of the gin file that imports it), then in the working directory, as a user who
    keeps ``my_kernels.py`` beside their config expects. The folder where it is found is
    appended to ``sys.path``, so the plugin's own imports of its neighbours work too.
    """
    spec = spec.strip()
    if not spec:
        raise PluginError("Empty plugin name. Use --plugin pkg.module or --plugin path/to/file.py.")
    if _is_path(spec):
        return _load_file(spec)
    if spec in _LOADED:
        return _LOADED[spec]
    top = spec.split(".")[0]
    folders = list(dict.fromkeys(os.path.abspath(d) for d in [*search_dirs, os.getcwd()]))
    try:
        on_path = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        on_path = True  # let the import below report it
    if not on_path:
        found = _find_in_folders(top, folders)
        if found is not None and found not in sys.path:
            sys.path.append(found)
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name and spec.startswith(exc.name):
            hint = (
                f"No module named {exc.name!r} on sys.path, nor in "
                + ", ".join(repr(f) for f in folders)
                + f". Put {top}.py (or the package folder {top}/) there, add its folder to "
                "PYTHONPATH, install the package that provides it (pip install ...), or pass "
                "a path to a .py file instead."
            )
        raise _fail("module", spec, exc, hint) from exc
    except BaseException as exc:  # noqa: BLE001
        raise _fail("module", spec, exc) from exc
    _LOADED[spec] = module
    return module


def _entry_points() -> List[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_plugins(plugins: Optional[Iterable[str]] = None, entry_points: bool = True) -> List[ModuleType]:
    """Load installed entry-point plugins (group ``flexcore.plugins``), then ``plugins``."""
    modules = []
    if entry_points:
        for ep in _entry_points():
            key = f"entry_point:{ep.name}={ep.value}"
            if key in _LOADED:
                continue
            try:
                loaded = ep.load()
            except BaseException as exc:  # noqa: BLE001
                dist = getattr(getattr(ep, "dist", None), "name", "?")
                raise _fail(
                    f"entry point {ep.name!r} of installed package {dist!r}",
                    ep.value,
                    exc,
                    "Fix or uninstall that package to continue.",
                ) from exc
            module = loaded if isinstance(loaded, ModuleType) else sys.modules.get(ep.module)
            _LOADED[key] = module
            modules.append(module)
    for spec in plugins or ():
        modules.append(load_plugin(spec))
    return modules


def loaded_plugins() -> List[str]:
    """Specs of every plugin loaded so far in this process."""
    return list(_LOADED)

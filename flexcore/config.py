"""Gin configuration: search paths, parsing with actionable errors, saved configs.

Every experiment is composed from gin files and ``--gin`` bindings. Files are looked
up as given (relative to the working directory), then under ``gin_configs/`` and each
project's ``gin_configs/``, so ``include 'base/train.gin'`` works from anywhere; an
``include`` looks beside the including file first, and a gin ``import`` of a module
that ``sys.path`` lacks looks there too (docs/plugins.md).
"""
from __future__ import annotations

import contextlib
import difflib
import glob
import importlib
import importlib.util  # gin's include handling needs importlib.util imported (gin 0.5.0 bug)
import inspect
import logging
import os
import pkgutil
import re
import tokenize
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import gin
from gin import config_parser

import flexcore.gin_configs as builtin_configs
import flexcore.projects as projects_pkg
from flexcore.registry import PLUGIN_HINT, import_builtins, load_plugin, load_plugins

__all__ = [
    "ConfigError",
    "config_search_paths",
    "setup_search_paths",
    "resolve_config_file",
    "parse_config",
    "write_config_files",
    "list_config_files",
    "binding_origins",
    "explain_build_error",
]

_IMPORT_RE = re.compile(r"^\s*import\s+([\w.]+)\s*(?:#.*)?$")
_INCLUDE_RE = re.compile(r"""^\s*include\s+(['"])(.+?)\1\s*(?:#.*)?$""")


class ConfigError(ValueError):
    """A gin file or binding could not be used; says which file, line and fix."""


def config_search_paths() -> List[str]:
    """Directories searched for gin files: flexcore's ``gin_configs`` and each project's."""
    paths = [os.path.dirname(os.path.abspath(builtin_configs.__file__))]
    # Installed (non-editable) projects live under flexcore/projects/<pkg>/gin_configs.
    for info in pkgutil.iter_modules(projects_pkg.__path__):
        cand = os.path.join(os.path.dirname(projects_pkg.__file__), info.name, "gin_configs")
        if os.path.isdir(cand):
            paths.append(cand)
    # Source checkouts and editable installs: <repo>/projects/<Name>/gin_configs.
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cand in sorted(glob.glob(os.path.join(repo_root, "projects", "*", "gin_configs"))):
        if cand not in paths:
            paths.append(cand)
    return paths


def setup_search_paths() -> List[str]:
    """Add :func:`config_search_paths` to gin's include path (idempotent)."""
    paths = config_search_paths()
    known = set(gin.config._LOCATION_PREFIXES)  # noqa: SLF001 - gin has no getter
    for path in paths:
        if path not in known:
            gin.add_config_file_search_path(path)
    return paths


def list_config_files(pattern: str = "*") -> List[str]:
    """Gin files under the search paths (relative names), filtered by a wildcard."""
    import fnmatch

    names = set()
    for root in config_search_paths():
        for path in glob.glob(os.path.join(root, "**", "*.gin"), recursive=True):
            names.add(os.path.relpath(path, root))
    return sorted(n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower()))


def resolve_config_file(path: str) -> str:
    """Absolute path of a gin file given as a path or as a name under the search paths."""
    candidates = [path] if os.path.isabs(path) else [os.path.abspath(path)] + [
        os.path.join(root, path) for root in config_search_paths()
    ]
    for cand in candidates:
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    known = list_config_files()
    close = difflib.get_close_matches(path, known, n=3, cutoff=0.4)
    msg = f"Gin file {path!r} not found. Looked in: the working directory"
    msg += "".join(f", {root}" for root in config_search_paths()) + "."
    if close:
        msg += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    msg += " `python tools/train_net.py --list` shows every shipped config."
    raise ConfigError(msg)


def _beside(includer: Optional[str], name: str) -> Optional[str]:
    """``name`` next to the including file, if it exists there (includes look there first)."""
    if includer is None or os.path.isabs(name):
        return None
    cand = os.path.join(os.path.dirname(includer), name)
    return os.path.abspath(cand) if os.path.isfile(cand) else None


def _walk(files: Sequence[str], seen: Optional[set] = None, includer: Optional[str] = None) -> Iterator[Tuple[str, str]]:
    """(path, text) of each file and, recursively, of what it includes."""
    seen = set() if seen is None else seen
    for name in files:
        try:
            path = _beside(includer, name) or resolve_config_file(name)
        except ConfigError:
            continue  # reported with its include location by gin itself
        if path in seen:
            continue
        seen.add(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        yield path, text
        includes = [m.group(2) for m in map(_INCLUDE_RE.match, text.splitlines()) if m]
        yield from _walk(includes, seen, includer=path)


def _plugin_imports(files: Sequence[str]) -> List[Tuple[str, str, int]]:
    """(module, file, line) of every ``import`` line in the files and their includes."""
    found = []
    for path, text in _walk(files):
        for lineno, line in enumerate(text.splitlines(), 1):
            m = _IMPORT_RE.match(line)
            if m and m.group(1) != "__gin__":
                found.append((m.group(1), path, lineno))
    return found


class _AcceptAll(config_parser.ParserDelegate):
    """Parser delegate that accepts any reference: used to find syntax errors only."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return None

    def macro(self, macro_name):
        return None


def _locate_syntax_error(files: Sequence[str], bindings: str) -> str:
    sources = list(_walk(files)) + [("--gin bindings", bindings)]
    for path, text in sources:
        try:
            for _ in config_parser.ConfigParser(text, _AcceptAll()):
                pass
        except (SyntaxError, tokenize.TokenError) as exc:
            line = getattr(exc, "lineno", None)
            if line is None and len(exc.args) > 1 and isinstance(exc.args[1], tuple):
                line = exc.args[1][0]
            return f"{path}, line {line}" if line else path
    return "one of the config files"


def _gin_names() -> List[str]:
    names = set()
    for selector in list(gin.config._REGISTRY._selector_map):  # noqa: SLF001 - gin has no public listing
        names.add(selector)
        names.add(selector.split(".")[-1])
    return sorted(names)


def _explain(exc: Exception, files: Sequence[str], bindings: str) -> str:
    text = str(exc)
    hint = ""
    m = re.search(r"No configurable matching (?:reference )?'@?([\w./]+)", text)
    if m:
        wanted = m.group(1).split("/")[-1].rstrip("()")
        close = difflib.get_close_matches(wanted, _gin_names(), n=3, cutoff=0.6)
        if close:
            hint += "Did you mean " + " or ".join(repr(c) for c in close) + "? "
        hint += (
            "Registered components are listed by `python -m flexcore.registry list`. "
            + PLUGIN_HINT
        )
    m = re.search(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'", text)
    if m:
        try:
            fn = gin.get_configurable(m.group(1))
            target = fn.__init__ if inspect.isclass(fn) else fn
            params = [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
            close = difflib.get_close_matches(m.group(2), params, n=2, cutoff=0.5)
            if close:
                hint += "Did you mean " + " or ".join(repr(c) for c in close) + "? "
            hint += f"Parameters of {m.group(1)}: {', '.join(params)}."
        except Exception:  # noqa: BLE001 - the hint is best effort
            pass
    if isinstance(exc, (SyntaxError, tokenize.TokenError)):
        hint += f"Syntax error in {_locate_syntax_error(files, bindings)}: check brackets and quotes."
    if isinstance(exc, OSError) and "Unable to open file" in text:
        hint += (
            "Included files are looked up beside the including file, then in the working directory, then under: "
            + ", ".join(config_search_paths()) + "."
        )
    return f"{text}\n{hint}".rstrip()


def parse_config(
    config_files: Sequence[str] = (),
    bindings: Sequence[str] = (),
    plugins: Sequence[str] = (),
    finalize: bool = True,
) -> List[str]:
    """Load plugins, then parse gin files and bindings; returns the resolved file paths.

    Args:
        config_files: gin files, as paths or names under the search paths.
        bindings: ``"A.b = 1"`` strings (each may hold several lines).
        plugins: modules or ``.py`` files to import first (``--plugin``).
        finalize: lock the config afterwards (gin.finalize).
    Raises:
        ConfigError: naming the file, line and a fix; PluginError for plugins.
    """
    load_plugins(plugins)
    import_builtins()
    setup_search_paths()
    resolved = [resolve_config_file(f) for f in config_files]
    for module, path, lineno in _plugin_imports(resolved):
        try:
            load_plugin(module, search_dirs=[os.path.dirname(path)])  # modules beside the gin file
        except ImportError as exc:
            raise type(exc)(f"{exc}\n  (imported by {path}, line {lineno})") from exc.__cause__
    binding_text = "\n".join(bindings)
    global _LAST_PARSE
    _LAST_PARSE = (list(resolved), list(bindings))  # where a build error's bindings came from
    root = logging.getLogger()
    root.addFilter(_quiet_include_probes)
    try:
        with _includes_beside_includer() as parse_file:
            for path in resolved:
                parse_file(path)
        gin.parse_config(binding_text)
        if finalize:
            gin.finalize()
    except (ValueError, KeyError, TypeError, OSError, SyntaxError, tokenize.TokenError, AttributeError) as exc:
        raise ConfigError(_explain(exc, resolved, binding_text)) from exc
    finally:
        root.removeFilter(_quiet_include_probes)
    return resolved


@contextlib.contextmanager
def _includes_beside_includer():
    """While parsing, gin's ``include 'x.gin'`` looks beside the including file first, then
    where gin looks (the working directory, then the search paths)."""
    gin_parse_file = gin.config.parse_config_file
    includers: List[str] = []

    def parse_file(config_file, *args, **kwargs):
        path = _beside(includers[-1] if includers else None, config_file) or config_file
        if not os.path.isabs(path):
            prefixes = gin.config._LOCATION_PREFIXES  # noqa: SLF001 - where gin will find it
            found = [os.path.join(p, path) for p in prefixes if os.path.isfile(os.path.join(p, path))]
            path = os.path.abspath(found[0]) if found else path
        includers.append(path)
        try:
            return gin_parse_file(path, *args, **kwargs)
        finally:
            includers.pop()

    gin.config.parse_config_file = parse_file
    try:
        yield parse_file
    finally:
        gin.config.parse_config_file = gin_parse_file


def _quiet_include_probes(record: logging.LogRecord) -> bool:
    """Drop gin's "Path not found" errors: it logs one for every include it then finds on a search path."""
    return not (record.getMessage().startswith("Path not found") and record.pathname.endswith("resource_reader.py"))


def write_config_files(output_dir: str, operative: bool = True) -> List[str]:
    """Write ``config.gin`` (everything parsed) and ``operative_config.gin`` (what was used)."""
    from iopath.common.file_io import g_pathmgr

    g_pathmgr.mkdirs(output_dir)
    written = []
    contents = [("config.gin", gin.config_str())]
    if operative:
        contents.append(("operative_config.gin", gin.operative_config_str()))
    for name, text in contents:
        path = os.path.join(output_dir, name)
        with g_pathmgr.open(path, "w") as f:
            f.write(text)
        written.append(path)
    return written


def format_bindings(bindings: Iterable[str]) -> str:
    """Bindings as gin text, one per line."""
    return "\n".join(b.strip() for b in bindings if b.strip())


# -- where bindings came from (for errors raised while building the configured objects) -------

_LAST_PARSE: Tuple[List[str], List[str]] = ([], [])
_CALL_RE = re.compile(r"\n  In call to configurable '([^']+)' \(<[^>]*>\)(?: in scope '([^']*)')?")


class _Macro(str):
    """A ``%MACRO`` reference met while collecting origins."""


class _OriginDelegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return None

    def macro(self, macro_name):
        return _Macro(macro_name)


def _origin_label(location) -> str:
    if location.filename is None:
        return "--gin"
    path = location.filename
    for root in [os.getcwd()] + config_search_paths():
        if path.startswith(root.rstrip(os.sep) + os.sep):
            path = os.path.relpath(path, root)
            break
    return f"{path}, line {location.line_num}"


def binding_origins(files: Optional[Sequence[str]] = None, bindings: Optional[Sequence[str]] = None) -> dict:
    """``{(scope, configurable selector, parameter): (binding text, origin, value)}`` of the last parse.

    Files are read in gin's order (includes in place, later bindings override earlier
    ones). Macros are keyed ``(scope, "%NAME", "")``; a value that is a macro reference
    comes back as the macro's name (a ``str`` subclass, :class:`_Macro`).
    """
    files = _LAST_PARSE[0] if files is None else files
    bindings = _LAST_PARSE[1] if bindings is None else bindings
    origins: dict = {}
    seen: set = set()

    def read(source) -> None:
        for statement in config_parser.ConfigParser(source, _OriginDelegate()):
            if isinstance(statement, config_parser.IncludeStatement):
                try:
                    path = resolve_config_file(statement.filename)
                except ConfigError:
                    continue
                read_file(path)
            elif isinstance(statement, config_parser.BindingStatement):
                scope, selector, arg, value, location = statement
                key = (scope, _canonical(selector), arg) if arg else (scope, "%" + selector, "")
                text = re.sub(r"\s+#[^'\"]*$", "", location.line_content.strip())  # drop a trailing comment
                origins[key] = (text, _origin_label(location), value)

    def read_file(path: str) -> None:
        if path not in seen:
            seen.add(path)
            with open(path, encoding="utf-8") as f:  # a file object: gin records its name
                read(f)

    try:
        for path in files:
            read_file(path)
        read("\n".join(bindings))
    except (SyntaxError, tokenize.TokenError, OSError):  # parse errors are reported by parse_config
        pass
    return origins


def _canonical(selector: str) -> str:
    try:
        found = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001 - gin's own lookup
    except KeyError:  # ambiguous: gin reported it at parse time
        found = None
    return found.selector if found else selector


def _applies(binding_scope: str, active_scope: str) -> bool:
    """Whether a binding made in ``binding_scope`` reaches a call in ``active_scope``."""
    active = active_scope.split("/") if active_scope else []
    return all(part in active for part in binding_scope.split("/")) if binding_scope else True


def _bindings_named(origins: dict, configurable: str, scope: str, message: str) -> List[Tuple[str, str, object]]:
    """The bindings of ``configurable``'s parameters that ``message`` mentions (most specific scope)."""
    chosen: dict = {}
    for (bscope, selector, arg), entry in origins.items():
        if not arg or selector.split(".")[-1] != configurable or not _applies(bscope, scope):
            continue
        words = {arg, arg.replace("_", " ")}
        if any(re.search(rf"(?<![\w.]){re.escape(w)}(?!\w)", message) or f"{configurable}.{arg}" in message
               for w in words):
            if arg not in chosen or len(bscope) > len(chosen[arg][0]):
                chosen[arg] = (bscope, entry)
    return [entry for _, entry in chosen.values()]


def _with_macros(origins: dict, entries: List[Tuple[str, str, object]]) -> List[Tuple[str, str, object]]:
    """``entries`` plus the binding of each macro they use (followed through macro chains)."""
    out, todo = [], list(entries)
    while todo:
        entry = todo.pop(0)
        if entry in out:
            continue
        out.append(entry)
        value = entry[2]
        if isinstance(value, _Macro):
            todo += [e for (scope, key, arg), e in origins.items() if key == "%" + value.split("/")[-1] and not arg]
    return out


def explain_build_error(exc: BaseException) -> Optional[str]:
    """A short message for an error a configurable raised while the experiment was built.

    The exception's own message (without gin's "In call to configurable" lines), then each
    binding it concerns with its origin (``file, line N`` or ``--gin "..."``), following
    macros. None if ``exc`` was not raised inside a gin configurable.
    """
    text = str(exc)
    calls = _CALL_RE.findall(text)
    if not calls:
        return None
    message = _CALL_RE.sub("", text).strip()
    origins = binding_origins()
    entries: List[Tuple[str, str, object]] = []
    for name, scope in calls:  # the innermost first; an outer one may name its own parameter
        entries += [e for e in _bindings_named(origins, name, scope, message) if e not in entries]
        if entries:
            break
    lines = [message]
    for binding, origin, _ in _with_macros(origins, entries):
        lines.append(f"  {binding}  ({origin})")
    chain = " < ".join(name + (f" (scope {scope})" if scope else "") for name, scope in calls)
    lines.append(f"  raised while building {chain}")
    return "\n".join(lines)

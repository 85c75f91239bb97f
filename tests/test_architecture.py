"""Structural rules, checked on the source text (parsed once, nothing imported).

1. Imports go down the layer order (docs/architecture.md), module level or inside functions,
   ``import x``, ``from x import y``, relative, or ``importlib.import_module("flexcore...")``.
2. No import cycle between modules (lazy imports included: a lazy import that closes a loop
   only hides the cycle).
3. No file over 500 lines, no function over 80 lines.
4. No ``except ImportError`` fallback around a flexcore import (flexcore is always there).

Today's violations live in ``tests/architecture_allowlist.py``, a ratchet: a new violation
fails, and so does an allowlisted one that is gone, so the lists only shrink. After moving
code, ``python tests/test_architecture.py`` prints the current lists; ``--write`` rewrites the
allowlist file and the "Known violations today" section of docs/architecture.md.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWLIST_FILE = os.path.join(REPO, "tests", "architecture_allowlist.py")
DOC_FILE = os.path.join(REPO, "docs", "architecture.md")
DOC_BEGIN = "<!-- BEGIN known-violations (generated: python tests/test_architecture.py --write) -->"
DOC_END = "<!-- END known-violations -->"

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

# Lowest first; a module may import its own package and the packages of lower tiers only
# (packages sharing a tier are independent of each other). Keys are the first name under
# ``flexcore.``; modules outside the base order are placed by what they are:
#   "" (flexcore/__init__.py), gin_configs and the bare flexcore.projects namespace hold no
#       code worth a dependency (version string, .gin files, an empty namespace): bottom.
#   config: gin parsing and config-file lookup; it needs the registry (plugins, builtins)
#       and nothing above, while layers/engine/analysis/export all parse configs: above registry.
#   fitting: an application (fits kernel nets to targets) built on layers + config; it sits
#       beside analysis as a user of the library, not part of the training stack.
#   export: loads a trained experiment the way analysis does (analysis.cli setup, checkpoint,
#       engine's Trainer registration), so it sits above analysis.
#   cli: the console-script dispatcher for train/analyze/fit: on top, with tools/.
#   <pkg>.__main__ (``python -m flexcore.registry``): a command run from the shell and never
#       imported, so it is an entry point like tools/: on top.
TIERS: List[Tuple[str, ...]] = [
    ("", "utils", "gin_configs", "projects"),
    ("registry",),
    ("config",),
    ("layers",),
    ("modeling",),
    ("data",),
    ("solver", "regularizers"),
    ("checkpoint",),
    ("compat",),
    ("engine",),
    ("analysis", "fitting"),
    ("export",),
    ("benchmarks",),
    ("cli", "<top>"),  # <top>: tools/ scripts and flexcore.projects.<pkg>
]
RANK: Dict[str, int] = {name: rank for rank, names in enumerate(TIERS) for name in names}
SCANNED_ROOTS = ("flexcore", "registry", "tools", "projects")


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted module name
    line: int
    lazy: bool  # inside a function (runs on call, not on import)
    type_only: bool  # under ``if TYPE_CHECKING:``
    guarded: bool  # inside ``try`` with an ``except ImportError`` handler


@dataclass
class Source:
    path: str  # relative to REPO, forward slashes
    module: str  # dotted name as installed ("flexcore.registry.core"; "tools.train_net")
    is_package: bool
    tree: ast.Module
    lines: int


def _module_name(rel: str) -> Optional[str]:
    parts = rel[:-3].split("/")
    if parts[0] == "registry":
        parts = ["flexcore"] + parts
    elif parts[0] == "projects":  # projects/<Name>/<pkg>/... -> flexcore.projects.<pkg>...
        if len(parts) < 4 or parts[2] == "tests":
            return None
        parts = ["flexcore", "projects"] + parts[2:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def clear_caches() -> None:
    for cached in (sources, _known_modules, _imports_by_path, _current):
        cached.cache_clear()


@functools.lru_cache(maxsize=None)
def sources() -> Tuple[Source, ...]:
    found = []
    for root in SCANNED_ROOTS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, root)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, REPO).replace(os.sep, "/")
                with open(full, encoding="utf-8") as f:
                    text = f.read()
                module = _module_name(rel) or rel
                found.append(Source(rel, module, name == "__init__.py", ast.parse(text, rel), text.count("\n") + 1))
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _known_modules() -> Set[str]:
    return {src.module for src in sources()}


def _resolve_from(src: Source, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = src.module.split(".") if src.is_package else src.module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _import_module_literal(node: ast.Call) -> Optional[str]:
    """``importlib.import_module("flexcore.x")`` / ``f"flexcore.x.{name}"``: the literal package part."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".") or None
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(getattr(k, "id", None) in ("ImportError", "ModuleNotFoundError") for k in kinds)


def imports_of(src: Source) -> List[Import]:
    return _imports_by_path()[src.path]


@functools.lru_cache(maxsize=None)
def _imports_by_path() -> Dict[str, List[Import]]:  # parsed and walked once for all rules
    return {src.path: _scan_imports(src) for src in sources()}


def _scan_imports(src: Source) -> List[Import]:
    """Every flexcore import in ``src``, each target resolved to the deepest module that exists."""
    known = _known_modules()
    found: List[Import] = []

    def add(target: str, node: ast.AST, ctx: Tuple[bool, bool, bool]) -> None:
        if target == "flexcore" or target.startswith("flexcore."):
            found.append(Import(target, node.lineno, *ctx))

    def visit(node: ast.AST, lazy: bool, type_only: bool, guarded: bool) -> None:
        ctx = (lazy, type_only, guarded)
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, ctx)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(src, node)
            for alias in node.names:  # "from pkg import sub" names the submodule when there is one
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, node, ctx)
        elif isinstance(node, ast.Call) and _import_module_literal(node):
            add(_import_module_literal(node), node, ctx)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, lazy, True, guarded)
            for child in node.orelse:
                visit(child, lazy, type_only, guarded)
            return
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for child in node.body:
                visit(child, lazy, type_only, True)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, lazy, type_only, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, lazy, type_only, guarded)

    visit(src.tree, False, False, False)
    return found


def layer_of(module: str) -> str:
    """``flexcore.layers.conv`` -> ``layers``; tools and project packages -> ``<top>``."""
    parts = module.split(".")
    if parts[0] != "flexcore" or parts[-1] == "__main__":  # a __main__ is run, never imported
        return "<top>"
    if len(parts) == 1:
        return ""
    if parts[1] == "projects" and len(parts) > 2:
        return "<top>"
    return parts[1]


def _allowed_below(layer: str) -> str:
    below = [n for names in TIERS[: RANK[layer]] for n in names if n not in ("", "projects", "gin_configs")]
    return ", ".join(below) if below else "nothing else in flexcore"


# -- the four rules: each yields (allowlist key, short note, actionable message) ------------------
def upward_imports() -> Iterator[Tuple[str, str, str]]:
    for src in sources():
        own = layer_of(src.module)
        for imp in imports_of(src):
            theirs = layer_of(imp.target)
            if own == theirs or RANK.get(theirs, len(TIERS)) < RANK.get(own, len(TIERS)):
                continue
            kind = "lazily imports" if imp.lazy else "imports"
            yield f"{src.path} -> {imp.target}", f"line {imp.line}{' lazy' if imp.lazy else ''}", (
                f"{src.path}:{imp.line} {kind} {imp.target}: {own or 'flexcore'} may import only "
                f"{_allowed_below(own)}; move the shared code down or make it a hook/registry entry"
            )


def import_graph() -> Dict[str, Dict[str, Tuple[str, int, bool]]]:
    """module -> {imported module: (path, line, lazy)}; TYPE_CHECKING imports never run."""
    graph: Dict[str, Dict[str, Tuple[str, int, bool]]] = {}
    known = _known_modules()
    for src in sources():
        edges = graph.setdefault(src.module, {})
        for imp in imports_of(src):
            target = imp.target
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if imp.type_only or target == src.module or target not in known:
                continue
            old = edges.get(target)
            if old is None or (old[2] and not imp.lazy):  # prefer the module-level edge
                edges[target] = (src.path, imp.line, imp.lazy)
    return graph


def _strongly_connected(graph: Dict[str, Dict[str, tuple]]) -> List[List[str]]:
    """Groups of two or more modules that all reach each other (the graph is small: plain DFS)."""
    reach: Dict[str, Set[str]] = {}
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            v = todo.pop()
            if v not in seen:
                seen.add(v)
                todo.extend(graph.get(v, {}))
        reach[start] = seen
    groups = {tuple(sorted(w for w in reach[v] if v in reach.get(w, ()))) for v in graph if v in reach[v]}
    return sorted(list(g) for g in groups)


def _cycle_path(graph: Dict[str, Dict[str, tuple]], component: List[str]) -> List[str]:
    """One shortest loop through the component's first module (breadth-first)."""
    members, start = set(component), component[0]
    parents: Dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return path[::-1] + [start]
                if w in members and w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return component + [start]


def import_cycles() -> Iterator[Tuple[str, str, str]]:
    graph = import_graph()
    for component in _strongly_connected(graph):
        path = _cycle_path(graph, component)
        hops = []
        for a, b in zip(path, path[1:]):
            where, line, lazy = graph[a][b]
            hops.append(f"{a} -> {b} ({where}:{line}{', lazy' if lazy else ''})")
        yield " <-> ".join(component), " -> ".join(m.split(".", 1)[-1] for m in path), (
            f"import cycle among {len(component)} modules: " + "; ".join(hops)
            + ". Move what both need into a lower module (or a hook) so the loop opens"
        )


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[Tuple[str, ast.AST]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _functions(node, name + ".")


def oversized() -> Iterator[Tuple[str, str, str]]:
    for src in sources():
        if src.lines > MAX_FILE_LINES:
            yield src.path, f"{src.lines} lines", (
                f"{src.path} has {src.lines} lines (limit {MAX_FILE_LINES}): split it by responsibility"
            )
        for name, node in _functions(src.tree):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - first + 1
            if length > MAX_FUNCTION_LINES:
                yield f"{src.path}::{name}", f"{length} lines", (
                    f"{src.path}:{node.lineno} {name} has {length} lines (limit "
                    f"{MAX_FUNCTION_LINES}): extract steps into named helpers"
                )


def import_error_fallbacks() -> Iterator[Tuple[str, str, str]]:
    for src in sources():
        for imp in imports_of(src):
            if imp.guarded:
                yield f"{src.path} -> {imp.target}", f"line {imp.line}", (
                    f"{src.path}:{imp.line} guards the import of {imp.target} with `except "
                    "ImportError`: flexcore is always installed, so the fallback is dead code; "
                    "import it plainly (and fix the layering if that is why it was guarded)"
                )


RULES = {
    "UPWARD_IMPORTS": (upward_imports, "imports that go up the layer order"),
    "IMPORT_CYCLES": (import_cycles, "import cycles (strongly connected module groups)"),
    "OVERSIZED": (oversized, f"files over {MAX_FILE_LINES} lines, functions over {MAX_FUNCTION_LINES}"),
    "IMPORT_ERROR_FALLBACKS": (import_error_fallbacks, "`except ImportError` around flexcore imports"),
}


def current(rule: str) -> Dict[str, Tuple[List[str], List[str]]]:
    """key -> (notes, messages) for today's violations of ``rule``."""
    return _current(rule)


@functools.lru_cache(maxsize=None)
def _current(rule: str) -> Dict[str, Tuple[List[str], List[str]]]:
    found: Dict[str, Tuple[List[str], List[str]]] = {}
    for key, note, message in RULES[rule][0]():
        notes, messages = found.setdefault(key, ([], []))
        notes.append(note)
        messages.append(message)
    return found


def load_allowlist() -> Dict[str, Set[str]]:
    spec = importlib.util.spec_from_file_location("architecture_allowlist", ALLOWLIST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {rule: set(getattr(module, rule)) for rule in RULES}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_no_new_violations(rule):
    allowed = load_allowlist()[rule]
    new = {k: v for k, v in current(rule).items() if k not in allowed}
    assert not new, f"{len(new)} new {RULES[rule][1]}:\n" + "\n".join(
        m for _, messages in new.values() for m in messages
    ) + "\n(fix it: tests/architecture_allowlist.py only holds violations older than this test, to be removed)"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_allowlist_only_shrinks(rule):
    stale = load_allowlist()[rule] - set(current(rule))
    assert not stale, (
        f"{len(stale)} allowlisted {RULES[rule][1]} no longer occur; delete them from "
        f"{rule} in tests/architecture_allowlist.py (or run python tests/test_architecture.py --write):\n"
        + "\n".join(sorted(stale))
    )


def test_docs_list_the_allowlisted_violations():
    with open(DOC_FILE, encoding="utf-8") as f:
        text = f.read()
    assert DOC_BEGIN in text and DOC_END in text, f"{DOC_FILE} lost its generated section markers"
    section = text.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0].strip()
    assert section == known_violations_markdown(load_allowlist()).strip(), (
        "docs/architecture.md 'Known violations today' is out of date: run python tests/test_architecture.py --write"
    )


def test_the_rules_see_violations(tmp_path, monkeypatch):
    """Each rule fires on a small tree that breaks it, so a passing run means something."""
    bad = {
        "flexcore/layers/a.py": "import os\ndef f():\n    from flexcore.engine import b\n",
        "flexcore/engine/b.py": "from ..layers import a\nimport importlib\nimportlib.import_module('flexcore.analysis.c')\n",
        "flexcore/analysis/c.py": "try:\n    from flexcore.utils import d\nexcept ImportError:\n    d = None\n"
        + "def g():\n" + "    x = 1\n" * 81,
        "flexcore/analysis/e.py": "import flexcore.analysis.f\n",
        "flexcore/analysis/f.py": "from . import e\n" + "\n" * 500,
        "flexcore/utils/d.py": "",
    }
    for rel, text in bad.items():
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    clear_caches()
    try:
        found = {rule: set(current(rule)) for rule in RULES}
    finally:
        clear_caches()
    assert found["UPWARD_IMPORTS"] == {
        "flexcore/layers/a.py -> flexcore.engine.b", "flexcore/engine/b.py -> flexcore.analysis.c"}
    assert found["IMPORT_CYCLES"] == {
        "flexcore.engine.b <-> flexcore.layers.a", "flexcore.analysis.e <-> flexcore.analysis.f"}
    assert found["OVERSIZED"] == {"flexcore/analysis/c.py::g", "flexcore/analysis/f.py"}
    assert found["IMPORT_ERROR_FALLBACKS"] == {"flexcore/analysis/c.py -> flexcore.utils.d"}


# -- regenerating the allowlist and the docs section -------------------------------------
def allowlist_source() -> str:
    out = ['"""Violations of tests/test_architecture.py that exist today, one set per rule.', "",
           "A ratchet: the test fails on a violation missing here and on an entry here that no longer",
           "occurs, so the sets only shrink. Regenerate after moving code:",
           "    python tests/test_architecture.py --write", '"""']
    for rule, (_, title) in RULES.items():
        out += ["", f"# {title}", f"{rule} = {{"]
        for key, (notes, _) in sorted(current(rule).items()):
            out.append(f"    {key!r},  # {', '.join(dict.fromkeys(notes))}")
        out.append("}")
    return "\n".join(out) + "\n"


def known_violations_markdown(allowed: Dict[str, Set[str]]) -> str:
    ups = allowed["UPWARD_IMPORTS"]
    by_pair: Dict[str, int] = {}
    for key in ups:
        path, target = key.split(" -> ")
        pair = f"{layer_of(_module_name(path) or 'tools') or 'flexcore'} -> {layer_of(target) or 'flexcore'}"
        by_pair[pair] = by_pair.get(pair, 0) + 1
    files = sorted(k for k in allowed["OVERSIZED"] if "::" not in k)
    funcs = sorted(k for k in allowed["OVERSIZED"] if "::" in k)
    lines = ["| rule | allowlisted today |", "|---|---|"]
    lines += [f"| {RULES[r][1]} | {len(allowed[r])} |" for r in RULES]
    lines += ["", f"Upward imports by layer pair ({len(ups)} file -> module pairs):", ""]
    lines += [f"- {pair}: {n}" for pair, n in sorted(by_pair.items())]
    lines += ["", "Import cycles:", ""] + [f"- {c}" for c in sorted(allowed["IMPORT_CYCLES"])]
    lines += ["", f"Files over {MAX_FILE_LINES} lines: " + (", ".join(f"`{f}`" for f in files) or "none")]
    lines += ["", f"Functions over {MAX_FUNCTION_LINES} lines: " + (", ".join(f"`{f}`" for f in funcs) or "none")]
    lines += ["", "`except ImportError` fallbacks around flexcore imports: "
              + (", ".join(f"`{k}`" for k in sorted(allowed["IMPORT_ERROR_FALLBACKS"])) or "none")]
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    text = allowlist_source()
    if "--write" not in argv:
        print(text, end="")
        return 0
    with open(ALLOWLIST_FILE, "w", encoding="utf-8") as f:
        f.write(text)
    with open(DOC_FILE, encoding="utf-8") as f:
        doc = f.read()
    head, rest = doc.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1]
    section = known_violations_markdown(load_allowlist())
    with open(DOC_FILE, "w", encoding="utf-8") as f:
        f.write(f"{head}{DOC_BEGIN}\n{section}\n{DOC_END}{tail}")
    print(f"wrote {ALLOWLIST_FILE} and the known-violations section of {DOC_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

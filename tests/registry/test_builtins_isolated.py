"""Each registry finds every built-in component on first lookup, in a fresh interpreter.

A test that imports a component module fills the registries for the tests after it, so
the in-process suite cannot catch a family whose ``builtins`` miss a module. Here fresh
interpreters import only ``flexcore.registry`` and look every name up (one interpreter per
set of families sharing their built-in modules); the expected names come from an
interpreter that imported every module of the library.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]

# Imports every flexcore module, then prints {family: [names]}.
_ALL_NAMES = """
import importlib, json, pkgutil, flexcore
from flexcore.registry import all_registries
for info in pkgutil.walk_packages(flexcore.__path__, "flexcore."):
    importlib.import_module(info.name)
print(json.dumps({
    fam: {"builtins": list(reg.builtins), "names": [name for name, _ in reg]}
    for fam, reg in all_registries().items()
}))
"""

# Imports only the registry, looks up each name of some families (ones with the same
# built-in modules, so none fills another), prints the names not found.
_LOOKUP = """
import json, sys, gin
from flexcore.registry import all_registries
missing = []
for family, names in json.loads(sys.argv[1]).items():
    for name in names:
        try:
            all_registries()[family].get(name)
            gin.get_configurable(family + "." + name)
        except Exception as exc:
            missing.append(f"{family}.{name}: {type(exc).__name__}: {exc}".splitlines()[0])
print(json.dumps(missing))
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=_REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _output(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out.strip().splitlines()[-1]


def test_every_family_finds_its_builtins_on_first_lookup():
    expected = json.loads(_output(_python(_ALL_NAMES)))
    assert {"kernel_nets", "masks", "convs", "backbones", "datasets"} <= set(expected)
    assert all(info["names"] for info in expected.values()), expected
    groups = {}
    for fam, info in expected.items():
        groups.setdefault(tuple(info["builtins"]), {})[fam] = info["names"]
    procs = [_python(_LOOKUP, json.dumps(families)) for families in groups.values()]
    missing = [name for proc in procs for name in json.loads(_output(proc))]
    assert not missing, missing

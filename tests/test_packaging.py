"""Packaging: a plain install carries the registry, gin configs and projects; the declared
dependencies are ranges that hold CI's pins, cover every library import, and let pip keep a
torch the user already has."""
import ast
import glob
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clean_copy(dest):
    """The checkout without build leftovers: setuptools reuses ``build/lib``, so a wheel built
    in the worktree could carry modules deleted since the last build."""
    anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".git")
    top_level = {"build", "dist", "output", "datasets"}  # gin_configs/base/datasets must stay

    def ignore(folder, names):
        skip = set(anywhere(folder, names))
        if os.path.samefile(folder, REPO):
            skip |= {n for n in names if n in top_level or n.startswith(".venv")}
        return skip

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    src = _clean_copy(tmp_path_factory.mktemp("src") / "flexcore")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True, capture_output=True, text=True,
    )
    (path,) = glob.glob(str(out / "flexcore-*.whl"))
    return path


@pytest.mark.slow
def test_wheel_maps_fixed_layout(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "flexcore/registry/__init__.py" in names
    assert "flexcore/gin_configs/__init__.py" in names
    for gin_file in glob.glob(os.path.join(REPO, "gin_configs", "**", "*.gin"), recursive=True):
        rel = os.path.relpath(gin_file, os.path.join(REPO, "gin_configs"))
        assert f"flexcore/gin_configs/{rel}" in names, rel
    for init in glob.glob(os.path.join(REPO, "projects", "*", "*", "__init__.py")):
        pkg = os.path.basename(os.path.dirname(init))
        if pkg == "tests":
            continue
        assert f"flexcore/projects/{pkg}/__init__.py" in names, pkg
        project = os.path.dirname(os.path.dirname(init))
        for gin_file in glob.glob(os.path.join(project, "gin_configs", "*.gin")):
            assert f"flexcore/projects/{pkg}/gin_configs/{os.path.basename(gin_file)}" in names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    # Every console script points at a function that exists.
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    scripts = dict(line.split(" = ") for line in text.split("[console_scripts]")[1].split("[")[0].split("\n") if " = " in line)
    assert {"flexcore-train", "flexcore-benchmark", "flexcore-convert-checkpoint"} <= set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.slow
def test_installed_copy_works_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True, capture_output=True, text=True,
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    code = (
        "import flexcore, flexcore.config as c;"
        "assert flexcore.__file__.startswith(%r), flexcore.__file__;"
        "print(c.config_search_paths())" % str(target)
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout
    assert str(target) in out
    listing = subprocess.run(
        [sys.executable, "-m", "flexcore.registry", "list"], cwd=tmp_path, env=env,
        check=True, capture_output=True, text=True,
    ).stdout
    assert "kernel_nets" in listing
    # A project's plugin and its gin files are found from the installed copy too.
    code = (
        "from flexcore.config import parse_config; import gin;"
        "parse_config(['quick/digits_flexnet.gin', 'rff_kernel.gin'], finalize=False); print(gin.config_str())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout
    assert "FlexConv.kernel_net = @RFFNet" in out
    listing = subprocess.run(
        [sys.executable, "-m", "flexcore.registry", "list", "kernel_nets", "--plugin", "flexcore.projects.rff_kernels"],
        cwd=tmp_path, env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert "flexcore.projects.rff_kernels.rff_net:RFFNet" in listing


# -- declared dependencies -----------------------------------------------------------------


def _install_requires():
    """setup.py's INSTALL_REQUIRES, read without running setup()."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "INSTALL_REQUIRES" for t in node.targets):
            return {Requirement(r).name.lower(): Requirement(r) for r in ast.literal_eval(node.value)}
    raise AssertionError("setup.py defines no INSTALL_REQUIRES list")


def _ci_pins():
    pins = {}
    for line in open(os.path.join(REPO, ".ci", "constraints.txt")):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = Version(version.strip())
    return pins


def _floor(req):
    (low,) = [s.version for s in req.specifier if s.operator == ">="]
    return low


def test_torch_is_a_range_that_holds_the_ci_pins_and_the_readme_states_it():
    reqs, pins = _install_requires(), _ci_pins()
    assert set(pins) == {"torch", "torchvision"}
    for name in ("torch", "torchvision"):
        operators = {s.operator for s in reqs[name].specifier}
        assert operators == {">=", "<"}, f"{name} must be a range, got {reqs[name]}"
        assert reqs[name].specifier.contains(pins[name]), f"CI pins {name}=={pins[name]} outside {reqs[name]}"
    assert not reqs["gin-config"].specifier.contains("0.6.0")  # private gin API in registry/config
    readme = open(os.path.join(REPO, "README.md")).read()
    for name in ("torch", "torchvision"):
        upper = [s.version for s in reqs[name].specifier if s.operator == "<"][0]
        assert f"{name} >= {_floor(reqs[name])}, < {upper}" in readme
    # The torch running these tests is one the declaration accepts.
    assert reqs["torch"].specifier.contains(Version(importlib.metadata.version("torch")).public)


def _library_files():
    roots = [os.path.join(REPO, "flexcore"), os.path.join(REPO, "registry")]
    roots += [d for d in glob.glob(os.path.join(REPO, "projects", "*", "*"))
              if os.path.isfile(os.path.join(d, "__init__.py")) and os.path.basename(d) != "tests"]
    for root in roots:
        for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
            if f"{os.sep}tests{os.sep}" not in path:
                yield path


def _imported_top_modules(path):
    """(top-level module, imported inside a function?) for every absolute import in ``path``."""
    tree = ast.parse(open(path).read())
    in_function = set()
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(func))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], id(node) in in_function) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], id(node) in in_function


def _optional_extras():
    """Distributions of setup.py's extras other than ``test`` (imported lazily, where used)."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            extras = ast.literal_eval(node.value)
            return {Requirement(r).name.lower() for name, reqs in extras.items() if name != "test" for r in reqs}
    return set()


def test_library_imports_only_declared_distributions_and_never_pytest():
    declared = set(_install_requires())
    optional = _optional_extras()  # e.g. [export]: allowed only inside the function that needs it
    assert "pytest" not in optional
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for path in _library_files():
        for module, lazy in _imported_top_modules(path):
            if module in sys.stdlib_module_names or module == "flexcore":
                continue
            dists = {d.lower() for d in providers.get(module, [module])}
            if not dists & (declared | optional if lazy else declared):
                missing.setdefault(module, []).append(os.path.relpath(path, REPO))
    assert not missing, (f"imported by the library but not in setup.py's INSTALL_REQUIRES (an extra's package "
                         f"may be imported only inside the function that needs it): {missing}")


def _fake_distribution(site, name, version, requires=()):
    """The metadata pip reads for an installed distribution (no code: resolution only)."""
    info = os.path.join(site, f"{name}-{version}.dist-info")
    os.makedirs(info)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for extra, text in (("INSTALLER", "pip\n"), ("RECORD", "")):
        with open(os.path.join(info, extra), "w") as f:
            f.write(text)


def _env_with_torch(tmp_path, torch_version, vision_version):
    """A venv whose own site-packages holds another torch/torchvision; every other dependency
    comes from this interpreter's site-packages, behind them on sys.path (offline)."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = str(env / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    _fake_distribution(site, "torch", torch_version)
    _fake_distribution(site, "torchvision", vision_version, [f"torch=={torch_version}"])
    outer = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    with open(os.path.join(site, "outer_site.pth"), "w") as f:
        f.write("\n".join(outer) + "\n")
    return python


def _pip_install_offline(python, source, *extra):
    # No pip config (a machine's find-links or constraints would change the answer), no index.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--disable-pip-version-check",
         *extra, "-e", str(source)],
        capture_output=True, text=True, timeout=600, env=env,
    )


@pytest.mark.slow
def test_editable_install_keeps_another_torch_within_the_range(tmp_path):
    source = _clean_copy(tmp_path / "flexcore")
    python = _env_with_torch(tmp_path, "2.5.1", "0.20.1")
    report = tmp_path / "report.json"
    done = _pip_install_offline(python, source, "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installed == ["flexcore"], installed
    versions = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('torch'), m.version('torchvision'))"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    assert versions == ["2.5.1", "0.20.1"]


@pytest.mark.slow
def test_a_torch_below_the_range_is_not_accepted(tmp_path):
    source = _clean_copy(tmp_path / "flexcore")
    python = _env_with_torch(tmp_path, "2.2.2", "0.17.2")
    done = _pip_install_offline(python, source, "--dry-run")
    # Offline, pip can only fail to find an accepted torch; online it would replace 2.2.2.
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"No matching distribution found for torch{_install_requires()['torch'].specifier}" in output, output

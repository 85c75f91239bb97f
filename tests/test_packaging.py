"""A plain (non-editable) install carries the registry, gin configs and projects."""
import glob
import importlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

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

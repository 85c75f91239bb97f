"""A plain (non-editable) install carries the registry, gin configs and projects."""
import glob
import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), REPO],
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

"""tools/export_model.py on the quick-start model: every format written, checked, and loaded
back in a Python process where flexcore cannot be imported, reproducing test accuracy."""
import importlib
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import torch

from flexcore.checkpoint import Checkpointer
from flexcore.export import FORMATS, INSTALL_HINT, missing_requirements
from flexcore.export.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = "quick/digits_flexnet.gin"
ONNX_MISSING = missing_requirements(["onnx"]).get("onnx")


def _quick_setup(split):
    from flexcore.analysis.cli import load_analysis_setup
    from flexcore.config import parse_config

    import flexcore.engine.trainer  # noqa: F401  (the config binds Trainer)

    parse_config([CONFIG], [], finalize=False)
    return load_analysis_setup(False, "cpu", split=split)


def _train_briefly(path):
    """The quick-start model after 100 Adam steps, saved by a Checkpointer."""
    torch.manual_seed(0)
    setup = _quick_setup("train")
    model = setup.build_model().train()
    inputs, targets = setup.batch(len(setup.dataset))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        index = torch.randint(len(inputs), (64,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(inputs[index]), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    Checkpointer(model, save_dir=os.path.dirname(path)).save(os.path.splitext(os.path.basename(path))[0])
    gin.clear_config(clear_constants=False)
    test = _quick_setup("test")
    model = test.build_model()
    Checkpointer(model).load(path, checkpointables=[])
    x_test, y_test = test.batch(len(test.dataset))
    with torch.no_grad():
        logits = model.eval()(x_test)
    gin.clear_config(clear_constants=False)
    return x_test.numpy(), y_test.numpy(), logits.numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Train, export (every installed format), then load the files without flexcore."""
    root = tmp_path_factory.mktemp("export")
    weights = str(root / "run" / "model_final.pth")
    torch.set_num_threads(1)
    x_test, y_test, logits = _train_briefly(weights)
    out = root / "exported"
    code = main(["--config-file", CONFIG, "--weights", weights, "--output-dir", str(out), "--num-samples", "32"])
    gin.clear_config(clear_constants=False)
    np.savez(root / "test_split.npz", inputs=x_test, labels=y_test)
    site_dirs = sorted({os.path.dirname(os.path.dirname(importlib.import_module(m).__file__))
                        for m in ("torch", "numpy", "onnxruntime") if importlib.util.find_spec(m)})
    child = (f"import sys; sys.path[:0] = {site_dirs!r}; sys.argv = ['load'] + {[str(out), str(root / 'test_split.npz'), str(root / 'logits.npz')]!r}; "
             f"exec(open({os.path.join(HERE, '_load_without_flexcore.py')!r}).read())")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", child], cwd=str(root), capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return {"code": code, "out": out, "loaded": loaded, "labels": y_test, "logits": logits,
            "loaded_logits": dict(np.load(root / "logits.npz"))}


@pytest.mark.slow
def test_export_writes_and_checks_every_installed_format(exported):
    assert exported["code"] == 0
    report = json.loads((exported["out"] / "export.json").read_text())
    expected = [name for name in FORMATS if name not in missing_requirements(list(FORMATS))]
    assert list(report["formats"]) == ["baked model", *expected]
    for name in expected:
        result = report["formats"][name]
        assert os.path.basename(result["file"]) == FORMATS[name].file_name and result["bytes"] > 10_000
        assert result["ok"] and result["max_rel_error"] <= 1e-4
    assert report["input_shape"] == ["batch", 1, 8, 8] and report["num_classes"] == 10
    assert not list(exported["out"].glob("*.partial*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FORMATS))
def test_format_reproduces_test_accuracy_without_flexcore(exported, name):
    if name == "onnx" and ONNX_MISSING:
        pytest.skip(f"ONNX export needs {', '.join(ONNX_MISSING)}: {INSTALL_HINT}")
    loaded = exported["loaded"]
    assert not loaded["flexcore_importable"]
    labels, reference = exported["labels"], exported["logits"]
    accuracy = float((reference.argmax(1) == labels).mean() * 100)
    assert 30.0 < accuracy < 100.0  # trained (chance: 10 %), so matching predictions mean something
    assert len(labels) == 359 and loaded["accuracy"][name] == pytest.approx(accuracy, abs=1e-9)
    output = exported["loaded_logits"][name]
    assert np.abs(output - reference).max() <= 1e-4 * np.abs(reference).max()


def test_named_format_without_its_packages_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert missing_requirements(["onnx", "pt2"]) == {"onnx": ["onnxscript"]}
    code = main(["--config-file", CONFIG, "--weights", str(weights), "--output-dir", str(tmp_path / "o"),
                 "--formats", "onnx"])
    err = capsys.readouterr().err
    assert code == 2 and "onnx needs onnxscript" in err and "pip install 'flexcore[export]'" in err


def test_original_flexconv_checkpoint_points_to_the_converter(tmp_path, capsys):
    from flexcore.utils.testing import seed_fixtures_dir

    folder = seed_fixtures_dir()
    if folder is None:
        pytest.skip("no seed fixtures of the original code")
    state = torch.load(folder / "flexnet7_cifar10.pt", weights_only=True)["state_dict"]
    path = tmp_path / "original.pt"
    torch.save({"model": state, "epoch": 3}, path)  # the original's checkpoint layout
    code = main(["--config-file", CONFIG, "--weights", str(path), "--output-dir", str(tmp_path / "o"),
                 "--formats", "torchscript"])
    err = capsys.readouterr().err
    assert code == 2 and "original FlexConv code" in err and "tools/convert_checkpoint.py" in err
    assert "init_strict" not in err


def test_original_checkpoint_is_refused_even_when_loading_what_fits(tmp_path):
    """Checkpoints.init_strict = False would load nothing of it: the converter is the way."""
    from flexcore.checkpoint import CheckpointMismatchError
    from flexcore.utils.testing import seed_fixtures_dir

    folder = seed_fixtures_dir()
    if folder is None:
        pytest.skip("no seed fixtures of the original code")
    path = tmp_path / "original.pt"
    torch.save(torch.load(folder / "flexconv2d_magnet.pt", weights_only=True)["state_dict"], path)  # bare
    model = _quick_setup("test").build_model()
    with pytest.raises(CheckpointMismatchError, match="convert_checkpoint.py"):
        Checkpointer(model).load(str(path), checkpointables=[], strict=False)


def test_tools_script_is_the_same_command(monkeypatch, capsys):
    import runpy

    script = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "export_model.py")
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(script, run_name="__main__")
    assert exit_info.value.code == 0 and "--weights" in capsys.readouterr().out


def test_outputs_beyond_the_tolerance_fail_and_keep_the_file(tmp_path, capsys):
    """A tolerance below float32 rounding cannot be met: exit 1, the file stays for inspection."""
    model = _quick_setup("test").build_model()
    Checkpointer(model, save_dir=str(tmp_path)).save("model_init")  # the initial weights
    gin.clear_config(clear_constants=False)
    out = tmp_path / "o"
    code = main(["--config-file", CONFIG, "--weights", str(tmp_path / "model_init.pth"), "--output-dir", str(out),
                 "--formats", "torchscript", "--num-samples", "8", "--tolerance", "1e-12"])
    captured = capsys.readouterr()
    assert code == 1 and "torchscript" in captured.err and "--tolerance 1e-12" in captured.err
    assert (out / "model.ts").exists() and "FAILED (> 1e-12)" in captured.out

"""Cross-resolution end to end on tiny images: train at 8 px, test at 16 px, fine-tune at 16 px."""
import json
import os

import gin
import pytest

from flexcore.engine.cross_resolution import CrossResolution, set_model_resolution
from flexcore.engine.defaults import OutputDirError, check_output_dir
from flexcore.engine.evaluation import evaluate
from flexcore.layers.traversal import continuous_convs
from flexcore.config import parse_config
from flexcore.utils.logger import setup_logger

from conftest import TINY_PLUGIN

BINDINGS = [
    "Data.dataset = 'TinyShapes'",
    "build_model.backbone = @TinyNet",
    "Data.batch_size = 32",
    "Schedule.epochs = 2",
    "Solver.lr = 0.01",
    "Outputs.tensorboard = False",
    "Outputs.kernel_report = False",  # matplotlib PNGs: seconds per run, checked in tests/analysis
    "CrossResolution.source_resolution = 8",
    "CrossResolution.target_resolution = 16",
    "CrossResolution.finetune_epochs = 1",
]


def _job(output_dir):
    gin.clear_config()
    parse_config([], BINDINGS, plugins=[TINY_PLUGIN], finalize=False)
    setup_logger(str(output_dir))
    return CrossResolution(str(output_dir))


def test_three_stages_adapt_the_convs_and_report_three_accuracies(tmp_path, tiny_plugin):
    job = _job(tmp_path)
    job.resume_or_load(resume=False)
    results = job.train()
    for stage in ("source", "target"):
        assert (tmp_path / stage / "model_final.pth").is_file()
        assert (tmp_path / stage / "summary.json").is_file()
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["source_test_accuracy"] == results["source"]["test_accuracy_best_model"]
    assert summary["ootb_difference"] == pytest.approx(summary["ootb_test_accuracy"] - summary["source_test_accuracy"])
    assert summary["finetuned_test_accuracy"] == results["target"]["test_accuracy_best_model"]
    assert results["target"]["iterations"] == 4  # 1 epoch of 128 samples at batch 32

    # Out of the box = the source's best model, adapted, on the 16 px test split.
    gin.clear_config()
    parse_config([], BINDINGS, plugins=[TINY_PLUGIN], finalize=False)
    check = job._stage("check", 16)
    check.checkpointer.load(str(tmp_path / "source" / "model_best.pth"), checkpointables=[])
    assert set_model_resolution(check.model, 16, 8, dim=2) == 2
    for _, conv in continuous_convs(check.model):
        assert conv.sampling_rate_norm == 0.25
    ootb = evaluate(check.model, check.eval_loader(check.test_set), check.task)
    assert ootb["accuracy"] == pytest.approx(summary["ootb_test_accuracy"])
    assert check.test_set[0][0].shape == (1, 16, 16)

    # A finished cross-resolution dir is refused for a fresh run; --resume retrains no stage.
    with pytest.raises(OutputDirError, match="summary.json"):
        check_output_dir(str(tmp_path))
    job = _job(tmp_path)
    job.resume_or_load(resume=True)
    again = job.train()
    assert again["target"]["iterations"] == 4  # the finished stage's summary, as written: nothing retrained
    assert again["finetuned_test_accuracy"] == summary["finetuned_test_accuracy"]
    assert again["ootb_test_accuracy"] == summary["ootb_test_accuracy"]
    # --eval-only: the fine-tuned model, adapted to 16 px again after loading.
    evaluated = _job(tmp_path).evaluate_only()
    assert evaluated["test"]["accuracy"] == pytest.approx(summary["target"]["test_accuracy_final_model"])


def test_bad_resolutions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be positive and different"):
        CrossResolution(str(tmp_path), source_resolution=16, target_resolution=16, finetune_epochs=1)
    with pytest.raises(ValueError, match="finetune_epochs"):
        CrossResolution(str(tmp_path), source_resolution=8, target_resolution=16, finetune_epochs=0)

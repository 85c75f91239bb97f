"""The ``accelerators`` and ``convergence`` benchmarks run end to end and write their JSON.

Speed and accuracy are not asserted here (the tables report them); the quick modes only
check the machinery: real models, real trainer, real data, a few steps.
"""
import json
import math

import gin

from flexcore.benchmarks.accelerators import build_flexnet
from flexcore.benchmarks.harness import BENCHMARKS, main


def test_accelerators_quick_compares_variants_from_the_same_init(tmp_path):
    out = tmp_path / "acc.json"
    assert main(["accelerators", "--quick", "--skip-compile", "--repeat", "1", "--warmup", "0", "--min-sample", "0",
                 "--threads", "1", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    rows = payload["tables"][0]["rows"]
    assert [r[2] for r in rows] == ["eager", "channels_last", "bf16"]
    losses = payload["data"]["tiny"]["step1_loss"]
    # Same model, same batch: channels-last is exact, bf16 within its rounding.
    assert losses["channels_last"] == losses["eager"] or math.isclose(losses["channels_last"], losses["eager"], rel_tol=1e-5)
    assert math.isclose(losses["bf16"], losses["eager"], rel_tol=2e-2)


def test_convergence_quick_trains_every_run(tmp_path, capsys):
    assert "convergence" in BENCHMARKS
    out = tmp_path / "convergence.json"
    assert main(["convergence", "--quick", "--json", str(out), "--output-dir", str(tmp_path / "runs")]) == 0
    payload = json.loads(out.read_text())
    data = payload["data"]
    assert set(data) == {"digits_flexnet", "sdigits_flextcn", "adding_flextcn", "copymemory_flextcn"}
    for name, run in data.items():
        assert run["iterations"] == 3 and math.isfinite(run["final_train_loss"]), name
        assert (tmp_path / "runs" / name / "metrics.json").exists()
    assert 0.0 <= data["digits_flexnet"]["test_accuracy_final_model"] <= 100.0
    assert data["adding_flextcn"]["test_loss_final_model"] > 0
    assert 0.0 <= data["copymemory_flextcn"]["test_recall_accuracy"] <= 100.0
    assert not payload["checks"]  # no targets for a run that was not trained to convergence
    assert "Convergence on CPU" in capsys.readouterr().out
    assert gin.config_str() == ""  # leaves no config behind


def test_build_flexnet_is_the_paper_configuration():
    model = build_flexnet(16, 2, 32)
    assert model.cconv1.horizon == 33 and type(model.cconv1.mask).__name__ == "GaussianMask"

"""The benchmark harness: its reference implementation is right and the CLI writes its JSON.

Speed itself is never asserted here (targets live in tools/benchmark.py's tables).
"""
import json
import subprocess
import sys

import pytest
import torch

from flexcore.benchmarks.layers import naive_fft_conv
from flexcore.benchmarks.harness import BENCHMARKS, main, time_round_robin
from flexcore.layers import functional as FC


@pytest.mark.parametrize("spatial,ksize,causal", [((12, 10), (5, 3), False), ((20,), (7,), True), ((9,), (4,), True)])
def test_naive_fft_reference_is_correct(spatial, ksize, causal):
    x, w = torch.randn(2, 3, *spatial), torch.randn(4, 3, *ksize)
    ref = FC.conv(x, w, None, 1, "same", causal, fft=False)
    assert torch.allclose(naive_fft_conv(x, w, causal=causal), ref, atol=1e-4)


def test_round_robin_timing_returns_medians():
    stats = time_round_robin({"a": lambda: None, "b": lambda: sum(range(100))}, repeat=3, min_sample_s=0.001)
    assert set(stats) == {"a", "b"} and all(s.runs == 3 and s.q1 <= s.median <= s.q3 for s in stats.values())


def test_registry_lists_every_builtin_suite_in_a_fresh_process():
    # Nothing imported a suite before: the lookup itself must load them.
    code = "from flexcore.benchmarks import BENCHMARKS; print(' '.join(BENCHMARKS), 'convergence' in BENCHMARKS)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "True"
    assert {"layers", "fft", "fft-calibrate", "models", "inference", "sequences", "quickstart", "accelerators",
            "convergence", "gpu"} <= set(out[:-1])


def test_cli_writes_json(tmp_path, capsys):
    assert {"layers", "fft", "fft-calibrate"} <= set(BENCHMARKS)
    out = tmp_path / "fft.json"
    assert main(["fft", "--quick", "--repeat", "1", "--warmup", "0", "--min-sample", "0", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "fft" and payload["tables"][0]["rows"]
    assert payload["checks"][0]["name"].startswith("flexcore FFT conv")
    assert "FFT convolution" in capsys.readouterr().out


@pytest.mark.parametrize("command,first_title,check", [
    ("models", "FlexNet-7 CIFAR-10 training step", None),
    ("inference", "FlexNet-7 eval forward", None),
    ("sequences", "FlexTCN sCIFAR-10", "FlexTCN step growth"),
])
def test_model_level_benchmarks_write_tables_and_json(seed_fixtures, tmp_path, capsys, command, first_title, check):
    out = tmp_path / f"{command}.json"
    threads = torch.get_num_threads()
    argv = [command, "--quick", "--repeat", "1", "--warmup", "0", "--min-sample", "0", "--clock", "cpu", "--threads", "1",
            "--fixtures", str(seed_fixtures), "--json", str(out)]
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == command and payload["environment"]["clock"] == "cpu"
    assert payload["tables"][0]["title"].startswith(first_title)
    for table in payload["tables"]:
        assert table["rows"] and all(len(row) == len(table["headers"]) for row in table["rows"])
    assert [c["name"] for c in payload["checks"] if check and c["name"].startswith(check)] or check is None
    text = capsys.readouterr().out
    assert first_title in text and f"wrote {out}" in text
    if command == "models":  # the trained-like fixture's crops reach the benchmark
        assert (33, 33) in {tuple(k) for k in payload["data"]["trained_like_kernel_sizes"]}
        assert all(row["times"]["flexcore"]["median"] > 0 for row in payload["data"]["rows"])
    if command == "sequences":
        lengths = payload["data"]["lengths"]
        assert [r["length"] for r in lengths] == [256, 1024] and lengths[1]["kernel"] > lengths[0]["kernel"]


def test_n_log_n_growth():
    from flexcore.benchmarks.sequences import n_log_n_growth

    assert n_log_n_growth(1024, 1.0, 2048, 2.2) == pytest.approx(1.0)  # 2 * 11/10
    assert n_log_n_growth(1024, 1.0, 2048, 4.0) > 1.5  # quadratic growth is flagged


def test_fft_calibrate_measures_fits_and_refits_from_its_json(tmp_path, capsys):
    out = tmp_path / "calibrate.json"
    argv = ["fft-calibrate", "--quick", "--repeat", "2", "--warmup", "0", "--min-sample", "0", "--json", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    records, models = payload["data"]["records"], payload["data"]["models"]
    assert len(records) == 6 and all(r["fft_train"] > 0 and r["spatial_eval"] > 0 for r in records)
    assert set(models) == {str(("cpu", d, m)) for d in (1, 2) for m in ("train", "eval")}
    assert "Paste into COST_MODELS" in capsys.readouterr().out
    refit = tmp_path / "refit.json"
    assert main(["fft-calibrate", "--from-json", str(out), "--json", str(refit)]) == 0
    assert json.loads(refit.read_text())["data"]["models"] == models  # same measurements, same fit


def test_layers_sweep_reports_training_and_inference_picks(tmp_path):
    out = tmp_path / "layers.json"
    argv = ["layers", "--quick", "--repeat", "2", "--warmup", "0", "--min-sample", "0", "--json", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    names = [c["name"] for c in payload["checks"]]
    assert any("2D, training" in n for n in names) and any("1D causal, inference" in n for n in names)
    assert any("2D, training, autotune" in n for n in names)
    sweep = payload["data"]["sweep"]
    assert {r["auto_train"] for r in sweep} | {r["tuned_eval"] for r in sweep} <= {"fft", "spatial"}
    assert all("fft_eval" in r for r in sweep)

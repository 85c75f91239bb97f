"""The ``gpu`` benchmark runs end to end on the CPU (its ``--quick`` smoke mode) and writes
its JSON and markdown; the sync counts it reports there are real (the host-read counter).

The per-step host-read property itself (one batched read whatever the depth) is tested in
tests/engine/test_accelerate.py; here the benchmark's own counting machinery is checked.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch

from flexcore.benchmarks.gpu import _step_checks, count_syncs, epoch_figures
from flexcore.benchmarks.harness import BENCHMARKS, Report, Stats, main
from flexcore.benchmarks.layers import calibration_cases

REPO = Path(__file__).resolve().parents[2]


def test_gpu_quick_writes_sync_counts_step_rows_and_markdown(seed_fixtures, tmp_path):
    assert "gpu" in BENCHMARKS
    out, md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    threads = torch.get_num_threads()
    try:
        assert main(["gpu", "--device", "cpu", "--quick", "--skip-compile", "--models", "flexnet7_trained",
                     "flextcn_scifar10", "--repeat", "1", "--warmup", "0", "--min-sample", "0", "--threads", "1",
                     "--clock", "cpu", "--fixtures", str(seed_fixtures), "--json", str(out),
                     "--markdown", str(md)]) == 0
    finally:
        torch.set_num_threads(threads)
    payload = json.loads(out.read_text())
    env = payload["environment"]
    assert env["device"] == "cpu" and env["cpu"] and env["date_utc"] and env["torch"] == torch.__version__

    syncs = {(s["model"], s["phase"]): s for s in payload["data"]["syncs"]}
    assert set(syncs) == {(m, p) for m in ("flexnet7_init", "flexnet7_trained")
                          for p in ("train step", "eval forward", "baked forward")}
    for (model, phase), s in syncs.items():
        assert s["layers"] == 15 and s["syncs"] == s["host_reads"], s
        if phase == "train step":  # the one batched crop read, whatever the depth
            assert s["syncs"] == 1 and s["host_read_sites"][0].split(":")[0].endswith("traversal.py"), s
        else:
            assert s["syncs"] == 0, s
    assert all(c["ok"] for c in payload["checks"]) and len(payload["checks"]) == 6  # GPU-only targets absent

    steps = {(s["model"], s["variant"]): s for s in payload["data"]["steps"]}
    assert set(steps) == {("flexnet7_trained", v) for v in ("float32", "bf16 autocast", "channels-last",
                                                            "direct (fft=False)")} | {
        ("flextcn_scifar10", v) for v in ("float32", "bf16 autocast", "direct (fft=False)")}
    for s in steps.values():
        assert s["time"]["median"] > 0 and math.isclose(s["images_per_s"], s["batch"] * 1e3 / s["time"]["median"])
    assert steps[("flextcn_scifar10", "float32")]["input_shape"] == [2, 3, 256]
    assert {p["model"] for p in payload["data"]["parity"]} == {"flexnet7_trained", "flextcn_scifar10"}

    text = md.read_text()
    assert "Host synchronisations" in text and "| flexnet7_trained | direct (fft=False)" in text
    assert "[PASS] host syncs, flexnet7_trained, train step: 1" in text


def test_epoch_figures_are_cifar10_at_batch_64():
    figures = epoch_figures(25.0, 64)  # 25 ms a step
    assert math.isclose(figures["images_per_s"], 2560.0)
    assert math.isclose(figures["epoch_s"], 782 * 0.025)
    assert math.isclose(figures["schedule_h"], 782 * 0.025 * 350 / 3600)


def test_gpu_targets_are_checked_on_cuda_full_runs_only():
    stats = {"float32": Stats(30.0, 29.0, 31.0, 5), "bf16 autocast": Stats(20.0, 19.0, 21.0, 5),
             "direct (fft=False)": Stats(10.0, 9.0, 11.0, 5)}
    report = Report()
    _step_checks(report, stats, torch.device("cuda"), quick=False)
    checks = {c.name: c for c in report.checks}
    f32 = checks["FlexNet-7 trained-like epoch s (782 steps, float32)"]
    assert math.isclose(f32.value, 782 * 0.030) and f32.limit == 20 and not f32.ok  # 23.5 s: a miss
    best = checks["FlexNet-7 trained-like epoch s (782 steps, fastest: bf16 autocast)"]  # not the direct path
    assert math.isclose(best.value, 782 * 0.020) and best.ok
    ratio = next(c for name, c in checks.items() if name.startswith("FlexNet-7 trained-like bf16 / float32"))
    assert math.isclose(ratio.value, 2 / 3) and ratio.ok  # 1.5x faster >= 1.3x
    for device, quick in (("cpu", False), ("cuda", True)):
        report = Report()
        _step_checks(report, stats, torch.device(device), quick=quick)
        assert not report.checks


def test_count_syncs_counts_each_host_read_on_the_cpu():
    w = torch.nn.Parameter(torch.ones(3))

    def reads_twice():
        float(w.detach().sum())
        (w * 2).tolist()

    counts = count_syncs(reads_twice, (w,), torch.device("cpu"))
    assert counts["syncs"] == counts["host_reads"] == 2 and "cuda_sync_warnings" not in counts
    assert count_syncs(lambda: w * 2, (w,), torch.device("cpu"))["syncs"] == 0


def test_fft_calibrate_every_measures_a_spread_subset_and_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # a save would land under ~/.cache
    out = tmp_path / "cal.json"
    assert main(["fft-calibrate", "--quick", "--every", "2", "--repeat", "2", "--min-sample", "0",
                 "--json", str(out)]) == 0
    records = json.loads(out.read_text())["data"]["records"]
    expected = calibration_cases(True)[::2]
    assert [(r["batch"], r["channels"], tuple(r["input"]), tuple(r["kernel"])) for r in records] == expected
    assert not (tmp_path / ".cache").exists()
    with pytest.raises(SystemExit, match="--every must be >= 1"):
        main(["fft-calibrate", "--quick", "--every", "0", "--json", str(tmp_path / "bad.json")])


def _evidence(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(["bash", str(REPO / "tools" / "gpu_evidence.sh"), "--cpu-dry-run", "--python", sys.executable,
                           "--out", str(tmp_path / "out"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_gpu_evidence_script_runs_a_step_and_reports_each(tmp_path):
    # One cheap step end to end (the whole --cpu-dry-run takes over a minute here): its JSON,
    # the shared log, the summary; then a step with no time left is reported, not run.
    done = _evidence(tmp_path, "--steps", "layers")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    assert json.loads((out / "layers.json").read_text())["args"]["device"] == "cpu"
    assert (out / "summary.txt").read_text().startswith("layers: ok")
    assert "## layers" in (out / "log.txt").read_text()
    skipped = _evidence(tmp_path, "--steps", "gpu", "--total", "5")
    assert skipped.returncode == 1 and "gpu: SKIPPED" in (out / "summary.txt").read_text()
    unknown = _evidence(tmp_path, "--steps", "deploy")
    assert unknown.returncode == 1 and "unknown step 'deploy'" in unknown.stderr

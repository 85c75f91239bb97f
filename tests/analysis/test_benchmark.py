"""The benchmark harness: its reference implementation is right and the CLI writes its JSON.

Speed itself is never asserted here (targets live in tools/benchmark.py's tables).
"""
import json

import pytest
import torch

from flexcore.analysis.bench_layers import naive_fft_conv
from flexcore.analysis.benchmark import BENCHMARKS, main, time_round_robin
from flexcore.layers import functional as FC


@pytest.mark.parametrize("spatial,ksize,causal", [((12, 10), (5, 3), False), ((20,), (7,), True), ((9,), (4,), True)])
def test_naive_fft_reference_is_correct(spatial, ksize, causal):
    x, w = torch.randn(2, 3, *spatial), torch.randn(4, 3, *ksize)
    ref = FC.conv(x, w, None, 1, "same", causal, fft=False)
    assert torch.allclose(naive_fft_conv(x, w, causal=causal), ref, atol=1e-4)


def test_round_robin_timing_returns_medians():
    stats = time_round_robin({"a": lambda: None, "b": lambda: sum(range(100))}, repeat=3, min_sample_s=0.001)
    assert set(stats) == {"a", "b"} and all(s.runs == 3 and s.q1 <= s.median <= s.q3 for s in stats.values())


def test_cli_writes_json(tmp_path, capsys):
    assert {"layers", "fft", "fft-calibrate"} <= set(BENCHMARKS)
    out = tmp_path / "fft.json"
    assert main(["fft", "--quick", "--repeat", "1", "--warmup", "0", "--min-sample", "0", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "fft" and payload["tables"][0]["rows"]
    assert payload["checks"][0]["name"].startswith("flexcore FFT conv")
    assert "FFT convolution" in capsys.readouterr().out

"""Chunked, resumable cache builds: interrupted builds resume, stale chunks are discarded, the cache cleans up."""
import os

import pytest
import torch

from flexcore.data.cache import build_in_chunks, chunk_dir, load_or_build


def _squares(calls, fail_at=None):
    def compute(start, stop):
        if start == fail_at:
            raise KeyboardInterrupt
        calls.append(start)
        return {"x": torch.arange(start, stop) ** 2, "names": [f"n{i}" for i in range(start, stop)]}

    return compute


def test_interrupted_build_resumes_and_equals_an_uninterrupted_one(tmp_path):
    path = str(tmp_path / "feat.pt")
    calls = []
    with pytest.raises(KeyboardInterrupt):
        load_or_build(path, {"k": 1}, "fp", lambda: build_in_chunks(chunk_dir(path), {"k": 1}, 10, 3,
                                                                      _squares(calls, fail_at=6)))
    assert calls == [0, 3] and not os.path.exists(path)
    calls.clear()
    payload, built = load_or_build(path, {"k": 1}, "fp",
                                   lambda: build_in_chunks(chunk_dir(path), {"k": 1}, 10, 3, _squares(calls)))
    assert built and calls == [6, 9] and not os.path.exists(chunk_dir(path))
    assert torch.equal(payload["x"], torch.arange(10) ** 2) and payload["names"] == [f"n{i}" for i in range(10)]


def test_chunks_of_other_parameters_are_discarded(tmp_path):
    folder = str(tmp_path / "chunks")
    with pytest.raises(KeyboardInterrupt):
        build_in_chunks(folder, {"n_mfcc": 20}, 10, 3, _squares([], fail_at=6))
    calls = []
    out = build_in_chunks(folder, {"n_mfcc": 40}, 10, 3, _squares(calls))
    assert calls == [0, 3, 6, 9] and torch.equal(out["x"], torch.arange(10) ** 2)
    with open(os.path.join(folder, "000000000003.pt"), "wb") as f:
        f.write(b"truncated")  # a chunk cut short by a crash is computed again
    calls.clear()
    build_in_chunks(folder, {"n_mfcc": 40}, 10, 3, _squares(calls))
    assert calls == [3]
    calls.clear()
    out = build_in_chunks(folder, {"n_mfcc": 40}, 10, 4, _squares(calls))  # another chunk size: start over
    assert calls == [0, 4, 8] and torch.equal(out["x"], torch.arange(10) ** 2)

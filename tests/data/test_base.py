import gzip
import os
import pickle

import numpy as np
import pytest

from flexcore.data import CorruptDatasetError, MissingDatasetError, dataset_dir, holdout_indices
from flexcore.data.base import reading_file


def test_holdout_unstratified_sizes_and_determinism():
    train, val = holdout_indices(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    again = holdout_indices(100, 0.1, seed=3)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(holdout_indices(100, 0.1, seed=4)[1], val)
    with pytest.raises(ValueError, match="val_fraction"):
        holdout_indices(10, 1.0, 0)


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.33])
def test_holdout_stratified_keeps_class_shares_and_exact_total(fraction):
    rng = np.random.default_rng(0)
    labels = rng.choice(7, size=503, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05])
    train, val = holdout_indices(503, fraction, seed=1, labels=labels)
    assert len(val) == round(fraction * 503)
    assert not set(train) & set(val) and len(train) + len(val) == 503
    per_class = np.bincount(labels[val], minlength=7)
    ideal = np.bincount(labels, minlength=7) * len(val) / 503
    assert np.all(np.abs(per_class - ideal) < 1.0)
    again = holdout_indices(503, fraction, seed=1, labels=labels)
    assert np.array_equal(again[1], val)
    with pytest.raises(ValueError, match="labels"):
        holdout_indices(503, fraction, seed=1, labels=labels[:10])


def test_dataset_dir_candidates_and_alternatives(tmp_path):
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "a.gz").write_bytes(b"")
    (tmp_path / "MNIST" / "b").write_bytes(b"")
    found = dataset_dir(str(tmp_path), "X", ("MNIST/raw", "MNIST"), [("a", "a.gz"), "b"], "somewhere")
    assert found == os.path.join(str(tmp_path), "MNIST")
    with pytest.raises(MissingDatasetError) as err:
        dataset_dir(str(tmp_path), "X", ("MNIST/raw", "MNIST"), [("a", "a.gz"), "c"], "http://get.it")
    msg = str(err.value)
    assert "MNIST/raw" in msg and "no such folder" in msg and "missing c" in msg
    assert "a or a.gz" in msg and "http://get.it" in msg and "holds: MNIST" in msg


def test_reading_file_names_the_file(tmp_path):
    path = tmp_path / "batch.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"x" * 10000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match="batch.gz") as err:
        with reading_file(str(path), "Demo"):
            with gzip.open(path) as f:
                f.read()
    assert "Demo" in str(err.value) and isinstance(err.value.__cause__, EOFError)
    with pytest.raises(CorruptDatasetError, match="UnpicklingError"):
        with reading_file(str(path), "Demo"):
            pickle.loads(b"\x80\x02}q")

"""AddingProblem and CopyMemory: shapes, targets (recomputed independently), determinism."""
import gin
import pytest
import torch
from torch.utils.data import DataLoader

from flexcore.data import build_dataset, describe_dataset
from flexcore.registry import DATASETS


def test_registered_with_alias():
    assert DATASETS.get_raw("AddProblem") is DATASETS.get_raw("AddingProblem")
    assert "CopyMemory" in DATASETS


def test_adding_problem_samples_and_targets():
    ds = build_dataset("AddingProblem", "train", seq_length=64, train_samples=300)
    assert len(ds) == 300
    targets = []
    first_positions = []
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (2, 64) and x.dtype == torch.float32
        assert y.shape == () and y.dtype == torch.float32
        assert ((x[0] >= 0) & (x[0] < 1)).all()
        marked = torch.nonzero(x[1]).flatten()
        assert len(marked) == 2 and set(x[1].unique().tolist()) == {0.0, 1.0}
        assert torch.allclose(y, x[0, marked].sum())
        targets.append(float(y))
        first_positions.append(int(marked[0]))
    # sum of two U(0,1): mean 1, variance 1/6
    mean = sum(targets) / len(targets)
    assert abs(mean - 1.0) < 4 * (1 / 6 / len(targets)) ** 0.5
    # marks are spread over the whole sequence, not stuck in one half
    assert min(first_positions) < 16 and max(first_positions) > 32


def test_adding_problem_metadata_and_describe():
    ds = build_dataset("AddProblem", "test", seq_length=50)
    meta = ds.metadata
    assert (meta.in_channels, meta.num_classes, meta.shape, meta.dim) == (2, 1, (50,), 1)
    assert (meta.task, meta.loss) == ("regression", "mse")
    assert meta.split_sizes == {"train": 50_000, "val": 1_000, "test": 1_000}
    assert len(ds) == 1_000
    assert describe_dataset("AddingProblem", seq_length=50, root="/nowhere") == meta


def test_copy_memory_layout():
    T, M = 12, 5
    ds = build_dataset("CopyMemory", "val", seq_length=T, memory_size=M, val_samples=50)
    assert len(ds) == 50
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (1, T + 2 * M) and x.dtype == torch.float32
        assert y.shape == (T + 2 * M,) and y.dtype == torch.int64
        digits = x[0, :M]
        assert ((digits >= 1) & (digits <= 8)).all()
        assert (x[0, M : M + T - 1] == 0).all()
        assert (x[0, M + T - 1 :] == 9).all() and len(x[0, M + T - 1 :]) == M + 1
        assert (y[: M + T] == 0).all()
        assert torch.equal(y[M + T :], digits.long())
    meta = ds.metadata
    assert (meta.in_channels, meta.num_classes, meta.shape) == (1, 10, (T + 2 * M,))
    assert (meta.task, meta.loss) == ("sequence_classification", "cross_entropy")


@pytest.mark.parametrize("name", ["AddingProblem", "CopyMemory"])
def test_deterministic_per_seed_and_split(name):
    kw = dict(seq_length=30)
    a = build_dataset(name, "train", seed=3, **kw)
    b = build_dataset(name, "train", seed=3, **kw)
    # access order does not matter
    late = [b[i] for i in (7, 2, 0)]
    for i, sample in zip((7, 2, 0), late):
        assert all(torch.equal(u, v) for u, v in zip(a[i], sample))
    other_seed = build_dataset(name, "train", seed=4, **kw)
    test = build_dataset(name, "test", seed=3, **kw)
    assert not torch.equal(a[0][0], other_seed[0][0])
    assert not torch.equal(a[0][0], test[0][0])
    # samples differ from each other within a split
    assert not torch.equal(a[0][0], a[1][0])
    # split sizes do not change which sample sits at an index
    bigger = build_dataset(name, "train", seed=3, train_samples=20_000, **kw)
    assert torch.equal(a[5][0], bigger[5][0])


def test_index_errors_and_negative_indices():
    ds = build_dataset("CopyMemory", "test", seq_length=4, memory_size=2, test_samples=3)
    assert torch.equal(ds[-1][0], ds[2][0])
    with pytest.raises(IndexError):
        ds[3]


def test_dataloader_batches_and_fake_data_agree():
    ds = build_dataset("AddingProblem", "train", seq_length=40)
    x, y = next(iter(DataLoader(ds, batch_size=8)))
    fx, fy = next(iter(DataLoader(build_dataset("AddingProblem", fake=True, seq_length=40), batch_size=8)))
    assert x.shape == fx.shape == (8, 2, 40) and y.shape == fy.shape == (8,)
    cm = build_dataset("CopyMemory", "train", seq_length=6, memory_size=3)
    x, y = next(iter(DataLoader(cm, batch_size=4)))
    fx, fy = next(iter(DataLoader(build_dataset("CopyMemory", fake=True, seq_length=6, memory_size=3), batch_size=4)))
    assert x.shape == fx.shape == (4, 1, 12) and y.shape == fy.shape == (4, 12)


def test_gin_bindings_reach_dataset_and_describe():
    gin.parse_config("AddingProblem.seq_length = 77")
    assert describe_dataset("AddingProblem").shape == (77,)
    assert build_dataset("AddingProblem", "train")[0][0].shape == (2, 77)


def test_bad_arguments():
    with pytest.raises(ValueError, match="seq_length"):
        build_dataset("AddingProblem", "train", seq_length=1)
    with pytest.raises(ValueError, match="split"):
        DATASETS.get("CopyMemory")(split="validation")

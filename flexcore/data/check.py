"""Check a dataset (a plugin's or a built-in) against the ``DATASETS`` contract.

``check_dataset("MyDataset", seq_length=64)`` (or ``python -m flexcore.registry check
datasets MyDataset``) builds each split, reads samples and compares them with
``describe()``; every violation is reported with what to change.
"""
from __future__ import annotations

import pickle
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from flexcore.registry import DATASETS
from flexcore.registry.checks import ContractReport

from .base import SPLITS, DatasetMetadata

__all__ = ["check_dataset", "TASKS"]

TASKS = ("classification", "regression", "sequence_classification")
_COMPARED = ("in_channels", "num_classes", "shape", "task", "loss")

def _resolve(dataset: Union[str, Callable[..., Any]]):
    if isinstance(dataset, str):
        return DATASETS.name_of(DATASETS.get_raw(dataset)) or dataset, DATASETS.get_raw(dataset)
    return getattr(dataset, "__name__", repr(dataset)), dataset

def check_dataset(
    dataset: Union[str, Callable[..., Any]],
    root: Optional[str] = None,
    splits: Sequence[str] = SPLITS,
    **options: Any,
) -> ContractReport:
    """Check the dataset contract (docs/contracts.md) for these options; returns the report.

    Args:
        dataset: registered name or the factory (class) itself.
        root: dataset root passed to the factory (generated datasets ignore it).
        splits: splits to build (all three by default).
        options: dataset options, as gin would bind them.

    Raises:
        flexcore.registry.checks.ContractError: listing every violation and its fix.
    """
    name, factory = _resolve(dataset)
    report = ContractReport(name, "datasets")
    meta = _check_describe(report, factory, options)
    for split in splits:
        try:
            ds = factory(root=root, split=split, **options)
        except Exception as exc:  # noqa: BLE001 - reported with its origin
            report.crashed(f"{name}(root={root!r}, split={split!r})", exc,
                           "the factory must accept root= and split= in ('train', 'val', 'test') plus its options")
            continue
        _check_split(report, name, split, ds, meta)
    _check_determinism(report, factory, root, splits, options)
    try:
        factory(root=root, split="bogus", **options)
        report.fail("split='bogus' was accepted", "raise ValueError naming the split and ('train', 'val', 'test')")
    except (ValueError, KeyError):
        report.passed.append("an unknown split raises ValueError")
    except Exception as exc:  # noqa: BLE001
        report.crashed("split='bogus'", exc, "raise ValueError for an unknown split")
    return report.finish()

def _check_describe(report: ContractReport, factory, options) -> Optional[DatasetMetadata]:
    describe = getattr(factory, "describe", None)
    if not callable(describe):
        report.fail("no describe()", "add a classmethod describe(cls, **options) returning "
                    "flexcore.data.DatasetMetadata without reading files")
        return None
    try:
        meta = describe(root="/nonexistent-root", **options)
    except Exception as exc:  # noqa: BLE001
        report.crashed("describe(root=..., **options)", exc,
                       "describe must take the factory's options and ignore the others (end its signature with **_ignored)")
        return None
    if not report.check(isinstance(meta, DatasetMetadata), "describe() returns DatasetMetadata",
                        f"describe() returned {type(meta).__name__}", "return flexcore.data.DatasetMetadata(...)"):
        return None
    positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    report.check(positive(meta.in_channels) and positive(meta.num_classes), "channels and classes are positive ints",
                 f"in_channels={meta.in_channels!r}, num_classes={meta.num_classes!r}", "use positive Python ints")
    report.check(isinstance(meta.shape, tuple) and 1 <= len(meta.shape) <= 3 and all(map(positive, meta.shape)),
                 f"shape {meta.shape} has 1-3 positive dims", f"shape={meta.shape!r}",
                 "give the spatial shape of one sample as a tuple of 1 to 3 positive ints, e.g. (1024,)")
    report.check(meta.task in TASKS, f"task {meta.task!r} is known", f"task={meta.task!r}", f"use one of {TASKS}")
    report.check(set(meta.split_sizes) <= set(SPLITS), "split_sizes names known splits",
                 f"split_sizes has keys {sorted(meta.split_sizes)}", f"use only {SPLITS} as keys")
    return meta

def _check_split(report: ContractReport, name: str, split: str, ds, meta: Optional[DatasetMetadata]) -> None:
    if not report.check(isinstance(ds, Dataset), f"{split}: a torch Dataset", f"{split}: built a {type(ds).__name__}",
                        "derive the class from torch.utils.data.Dataset"):
        return
    own = getattr(ds, "metadata", None)
    if not report.check(isinstance(own, DatasetMetadata), f"{split}: has .metadata", f"{split}: .metadata is {own!r}",
                        "set self.metadata = type(self).describe(**options) in __init__"):
        return
    if meta is not None:
        differ = [f for f in _COMPARED if getattr(own, f) != getattr(meta, f)]
        report.check(not differ, f"{split}: .metadata matches describe()",
                     f"{split}: .metadata and describe() differ in {differ}",
                     "compute .metadata with describe() from the same options")
        size = meta.split_sizes.get(split)
        report.check(size is None or size == len(ds), f"{split}: len() matches split_sizes",
                     f"{split}: len(dataset) is {len(ds)}, describe() says {size}",
                     "make describe()'s split_sizes the sizes the splits really have (or leave them out)")
    if not report.check(len(ds) > 0, f"{split}: not empty", f"{split}: len(dataset) is 0", "give every split samples"):
        return
    samples = []
    for index in sorted({0, len(ds) - 1}):
        try:
            samples.append(ds[index])
        except Exception as exc:  # noqa: BLE001
            report.crashed(f"{split}: dataset[{index}]", exc, "make __getitem__ accept 0 .. len - 1")
            return
    ok = all(_check_sample(report, split, s, own) for s in samples)
    if ok and len(samples) == 2:
        try:
            default_collate(samples)
            report.passed.append(f"{split}: samples batch with the default collate")
        except Exception as exc:  # noqa: BLE001
            report.crashed(f"{split}: collating two samples", exc, "return samples of one shape and type")
    try:
        pickle.dumps(ds)
        report.passed.append(f"{split}: picklable (DataLoader workers, DDP)")
    except Exception as exc:  # noqa: BLE001
        report.crashed(f"{split}: pickle.dumps(dataset)", exc,
                       "keep no open files, lambdas or generators on the instance; open files lazily")

def _check_sample(report: ContractReport, split: str, sample, meta: DatasetMetadata) -> bool:
    if not report.check(isinstance(sample, (tuple, list)) and len(sample) == 2, f"{split}: samples are (input, target)",
                        f"{split}: a sample is {type(sample).__name__}", "return (input, target) from __getitem__"):
        return False
    x, y = sample
    want = (meta.in_channels, *meta.shape)
    good_x = isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == want
    report.check(good_x, f"{split}: input float32 {want}",
                 f"{split}: input is {_describe(x)}, the metadata promises float32 {want}",
                 "return the input as a float32 tensor (in_channels, *shape) or fix describe()")
    good_y = _check_target(report, split, y, meta)  # reported even when the input is wrong too
    return good_x and good_y

def _check_target(report: ContractReport, split: str, y, meta: DatasetMetadata) -> bool:
    if meta.task == "classification":
        ok = isinstance(y, int) and not isinstance(y, bool) and 0 <= y < meta.num_classes
        want, fix = f"a Python int in [0, {meta.num_classes})", "return int(label)"
    elif meta.task == "regression":
        shape = () if meta.num_classes == 1 else (meta.num_classes,)
        ok = isinstance(y, torch.Tensor) and y.is_floating_point() and tuple(y.shape) == shape
        want, fix = f"a float tensor of shape {shape}", "return torch.tensor(value, dtype=torch.float32)"
    else:
        ok = (isinstance(y, torch.Tensor) and y.dtype == torch.int64 and tuple(y.shape) == tuple(meta.shape)
              and bool(((y >= 0) & (y < meta.num_classes)).all()))
        want, fix = f"an int64 tensor {meta.shape} in [0, {meta.num_classes})", "return one int64 label per step"
    return report.check(ok, f"{split}: {meta.task} target is {want}",
                        f"{split}: the {meta.task} target is {_describe(y)}, expected {want}", fix)

def _check_determinism(report: ContractReport, factory, root, splits, options) -> None:
    """Evaluation splits must be the same samples on every build (seeded), or runs cannot be compared."""
    for split in [s for s in splits if s != "train"][:1]:
        try:
            first, second = factory(root=root, split=split, **options), factory(root=root, split=split, **options)
            same = len(first) == len(second) and all(
                torch.equal(torch.as_tensor(a[0]), torch.as_tensor(b[0]))
                for a, b in ((first[i], second[i]) for i in sorted({0, len(first) - 1}))
            )
        except Exception:  # noqa: BLE001 - build/read failures were reported per split
            return
        report.check(same, f"{split}: the same samples on every build",
                     f"{split}: two builds with the same options give different samples",
                     "draw data and hold-outs from a seeded generator (e.g. flexcore.data.holdout_indices(n, f, seed))")

def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]

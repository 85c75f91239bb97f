"""Generated sequence tasks: the adding problem (regression) and copy memory (per-step labels).

Samples are generated lazily from a per-sample generator, so a split costs no memory and
no start-up time, and sample ``i`` of ``(seed, split)`` is the same in every run, worker
and rank. Splits draw from different streams, so train, val and test never share samples
by construction of their seeds.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch.utils.data import Dataset

from flexcore.registry import DATASETS

from .base import SPLITS, DatasetMetadata
from .seeds import sample_generator, stream_offset

__all__ = ["AddingProblem", "CopyMemory", "adding_problem_sample", "copy_memory_sample"]


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{name}: unknown split {split!r}; use one of {SPLITS}.")


def _split_size(split: str, train: int, val: int, test: int) -> int:
    return {"train": train, "val": val, "test": test}[split]


def adding_problem_sample(seq_length: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """One adding-problem sample.

    Returns:
        x: ``(2, seq_length)`` float32; row 0 values ``U(0, 1)``, row 1 zeros except 1 at
            two distinct random positions.
        y: 0-dim float32, the sum of the two marked values.
    """
    x = torch.zeros(2, seq_length)
    torch.rand(seq_length, generator=generator, out=x[0])
    # One draw over the L*(L-1) ordered pairs of distinct positions: exactly uniform.
    pair = int(torch.randint(seq_length * (seq_length - 1), (1,), generator=generator))
    first, second = divmod(pair, seq_length - 1)
    second += second >= first  # skip `first`: `second` ranges over the other L-1 positions
    view = x.numpy()  # scalar reads/writes through numpy: ~100x cheaper than tensor indexing
    view[1, first] = view[1, second] = 1.0
    return x, torch.tensor(view[0, first] + view[0, second])


def copy_memory_sample(
    seq_length: int, memory_size: int, generator: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One copy-memory sample with blank length ``T = seq_length`` and ``M = memory_size`` digits.

    Returns:
        x: ``(1, T + 2M)`` float32: the ``M`` digits ``U{1..8}``, ``T - 1`` zeros, ``M + 1`` nines.
        y: ``(T + 2M,)`` int64: ``M + T`` zeros, then the digits.
    """
    digits = torch.randint(1, 9, (memory_size,), generator=generator)
    x = torch.cat(
        [digits, torch.zeros(seq_length - 1, dtype=torch.long), torch.full((memory_size + 1,), 9)]
    )
    y = torch.cat([torch.zeros(memory_size + seq_length, dtype=torch.long), digits])
    return x.float().unsqueeze(0), y


@DATASETS.register(aliases=("AddProblem",))
class AddingProblem(Dataset):
    """The adding problem: regress the sum of the two marked values of a random sequence.

    Args:
        root: unused (generated data); accepted for the dataset contract.
        split: ``"train"``, ``"val"`` or ``"test"``; each draws from its own seeded stream.
        seq_length: sequence length ``L``.
        seed: base seed; sample ``i`` is a function of ``(seed, split, i)`` only.
        train_samples, val_samples, test_samples: split sizes (original: 50,000 / - / 1,000).
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        seq_length: int = 1000,
        seed: int = 0,
        train_samples: int = 50_000,
        val_samples: int = 1_000,
        test_samples: int = 1_000,
    ):
        _check_split("AddingProblem", split)
        self.metadata = self.describe(
            seq_length=seq_length, train_samples=train_samples, val_samples=val_samples,
            test_samples=test_samples,
        )
        self.split = split
        self.seq_length = seq_length
        self.length = _split_size(split, train_samples, val_samples, test_samples)
        self._offset = stream_offset(seed, f"AddingProblem/{split}")

    @classmethod
    def describe(
        cls,
        seq_length: int = 1000,
        train_samples: int = 50_000,
        val_samples: int = 1_000,
        test_samples: int = 1_000,
        **_ignored,
    ) -> DatasetMetadata:
        """Metadata without generating anything: 2 channels, 1 regression output, MSE."""
        if seq_length < 2:
            raise ValueError(f"AddingProblem: seq_length must be >= 2 (two marked positions), got {seq_length}")
        return DatasetMetadata(
            name="AddingProblem",
            in_channels=2,
            num_classes=1,
            shape=(seq_length,),
            task="regression",
            loss="mse",
            split_sizes={"train": train_samples, "val": val_samples, "test": test_samples},
            extras={"seq_length": seq_length},
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not -self.length <= index < self.length:
            raise IndexError(f"AddingProblem[{self.split}] has {self.length} samples, index {index}")
        return adding_problem_sample(self.seq_length, sample_generator(self._offset, index % self.length))


@DATASETS.register()
class CopyMemory(Dataset):
    """Copy memory: reproduce ``M`` digits after ``T`` blank steps; one label per time step.

    Args:
        root: unused (generated data); accepted for the dataset contract.
        split: ``"train"``, ``"val"`` or ``"test"``; each draws from its own seeded stream.
        seq_length: blank length ``T``; sequences have length ``T + 2 * memory_size``.
        memory_size: number of digits ``M`` to remember.
        seed: base seed; sample ``i`` is a function of ``(seed, split, i)`` only.
        train_samples, val_samples, test_samples: split sizes (original: 10,000 / - / 1,000).
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        seq_length: int = 1000,
        memory_size: int = 10,
        seed: int = 0,
        train_samples: int = 10_000,
        val_samples: int = 1_000,
        test_samples: int = 1_000,
    ):
        _check_split("CopyMemory", split)
        self.metadata = self.describe(
            seq_length=seq_length, memory_size=memory_size, train_samples=train_samples,
            val_samples=val_samples, test_samples=test_samples,
        )
        self.split = split
        self.seq_length = seq_length
        self.memory_size = memory_size
        self.length = _split_size(split, train_samples, val_samples, test_samples)
        self._offset = stream_offset(seed, f"CopyMemory/{split}")

    @classmethod
    def describe(
        cls,
        seq_length: int = 1000,
        memory_size: int = 10,
        train_samples: int = 10_000,
        val_samples: int = 1_000,
        test_samples: int = 1_000,
        **_ignored,
    ) -> DatasetMetadata:
        """Metadata without generating anything: 1 channel, 10 classes per time step."""
        if seq_length < 1 or memory_size < 1:
            raise ValueError(
                f"CopyMemory: seq_length and memory_size must be >= 1, got {seq_length} and {memory_size}"
            )
        return DatasetMetadata(
            name="CopyMemory",
            in_channels=1,
            num_classes=10,
            shape=(seq_length + 2 * memory_size,),
            task="sequence_classification",
            loss="cross_entropy",
            split_sizes={"train": train_samples, "val": val_samples, "test": test_samples},
            extras={"seq_length": seq_length, "memory_size": memory_size},
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not -self.length <= index < self.length:
            raise IndexError(f"CopyMemory[{self.split}] has {self.length} samples, index {index}")
        generator = sample_generator(self._offset, index % self.length)
        return copy_memory_sample(self.seq_length, self.memory_size, generator)

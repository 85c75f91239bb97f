"""Training and evaluation loaders: deterministic, resumable at any iteration, sharded over ranks.

Training draws one permutation per epoch from ``(seed, epoch)`` alone, so iteration ``i``
always sees the same batch: a resumed run skips straight to its iteration without
loading the skipped batches, and a process group splits each global batch over its ranks
(rank ``r`` takes every ``world``-th sample of the permutation, like
``DistributedSampler``). Random augmentations draw from Python's ``random`` (and may use
numpy's or torch's global generator); :class:`SeededDataset` seeds all three from the
sample's key ``(seed, epoch, index)`` before loading it, so a sample is the same whether it
is loaded in the main process or a worker, with any number of workers or ranks, and a
resumed run redraws it exactly. In the main process the global generators are restored
afterwards, so loading never shifts the model's own random stream (dropout).
"""
from __future__ import annotations

import contextlib
import math
import random
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, get_worker_info

from flexcore.utils import comm

__all__ = [
    "epoch_seed",
    "TrainingBatchSampler",
    "SeededDataset",
    "seed_rngs",
    "restored_rngs",
    "build_train_loader",
    "build_test_loader",
    "per_rank_batch_size",
]


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for ``(seed, epoch)`` (no collisions between nearby pairs)."""
    words = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def per_rank_batch_size(global_batch_size: int, world_size: Optional[int] = None) -> int:
    """``global_batch_size / world_size``; they must divide."""
    world = comm.get_world_size() if world_size is None else world_size
    if global_batch_size % world:
        raise ValueError(
            f"Data.batch_size = {global_batch_size} is the global batch and must be divisible by the "
            f"number of processes ({world}); use e.g. {global_batch_size - global_batch_size % world or world}."
        )
    return global_batch_size // world


class TrainingBatchSampler:
    """Endless per-rank batches of ``(sample_seed, index)`` pairs, epoch after epoch.

    Args:
        size: samples in the dataset.
        batch_size: samples per batch on this rank.
        seed: the run's seed (the permutation of epoch ``e`` depends on ``(seed, e)`` only).
        shuffle: permute each epoch (else dataset order).
        drop_last: drop each epoch's last incomplete batch.
        rank, world_size: this process and the group size (default: from torch.distributed).
        start_iter: the first iteration to produce (resume).
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None, start_iter: int = 0):
        if size <= 0:
            raise ValueError("The training dataset is empty.")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self.start_iter = start_iter
        self.per_rank = math.ceil(size / self.world_size)
        if drop_last and self.per_rank < batch_size:
            raise ValueError(f"drop_last with {self.per_rank} samples per process and batch size {batch_size} leaves no batch.")

    @property
    def iters_per_epoch(self) -> int:
        return self.per_rank // self.batch_size if self.drop_last else math.ceil(self.per_rank / self.batch_size)

    def epoch_indices(self, epoch: int) -> List[int]:
        """This rank's sample indices for ``epoch`` (padded by wrapping, as ``DistributedSampler``)."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        order += order[: total - len(order)]
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        epoch, skip = divmod(self.start_iter, self.iters_per_epoch)
        while True:
            indices = self.epoch_indices(epoch)
            base = epoch_seed(self.seed, epoch)
            for b in range(skip, self.iters_per_epoch):
                chunk = indices[b * self.batch_size:(b + 1) * self.batch_size]
                yield [((base + 1_000_003 * i) % (1 << 63), i) for i in chunk]
            epoch, skip = epoch + 1, 0


def seed_rngs(seed: int) -> None:
    """Seed ``random``, numpy's and torch's global CPU generators from one integer.

    ``torch.default_generator.manual_seed`` rather than ``torch.manual_seed``: the latter
    also seeds every accelerator backend and costs milliseconds; this costs microseconds.
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def restored_rngs(restore: bool = True) -> Iterator[None]:
    """Put the three global CPU generators back as they were when the block ends (if ``restore``)."""
    saved = (random.getstate(), np.random.get_state(), torch.default_generator.get_state()) if restore else None
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.default_generator.set_state(saved[2])


class SeededDataset(Dataset):
    """Wraps a dataset to take ``(sample_seed, index)`` keys; seeds the RNGs from each sample's key.

    The sampler's keys depend on ``(seed, epoch, index)`` only, so a sample's augmentation
    does not depend on which process loads it, how many workers or ranks there are, or the
    batch it lands in.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitems__(self, keys: List[Tuple[int, int]]) -> List[Any]:
        samples = []
        # A worker owns its RNGs; the main process must get its own back (model dropout, resume).
        with restored_rngs(restore=get_worker_info() is None):
            for sample_seed, index in keys:
                seed_rngs(sample_seed)
                samples.append(self.dataset[index])
        return samples

    def __getitem__(self, key: Tuple[int, int]) -> Any:
        return self.__getitems__([key])[0]


def build_train_loader(dataset: Dataset, batch_size: int, seed: int = 0, num_workers: int = 0, start_iter: int = 0,
                       shuffle: bool = True, drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
    """An endless training loader; ``batch_size`` is the global batch (split over ranks).

    ``loader.batch_sampler.iters_per_epoch`` gives the iterations per epoch.
    """
    sampler = TrainingBatchSampler(len(dataset), per_rank_batch_size(batch_size), seed=seed, shuffle=shuffle,
                                   drop_last=drop_last, start_iter=start_iter)
    return DataLoader(
        SeededDataset(dataset), batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
        # Own generator: creating the iterator must not draw from the global RNG (exact resume).
        generator=torch.Generator().manual_seed(epoch_seed(seed, 1 << 30)),
    )


def build_test_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """In-order evaluation loader over this rank's contiguous shard (no padding, no duplicates)."""
    world, rank = comm.get_world_size(), comm.get_rank()
    if world > 1:
        shard = math.ceil(len(dataset) / world)
        dataset = Subset(dataset, range(rank * shard, min((rank + 1) * shard, len(dataset))))
    return DataLoader(
        dataset, batch_size=max(1, per_rank_batch_size(batch_size) if batch_size % world == 0 else batch_size // world),
        shuffle=False, num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )

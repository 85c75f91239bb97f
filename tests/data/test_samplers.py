"""Training/test loaders: resumable order, rank sharding, augmentations independent of workers."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from flexcore.data.samplers import SeededDataset, TrainingBatchSampler, build_test_loader, build_train_loader


class RandomlyAugmented(Dataset):
    """Each sample draws from the three global generators, as a random augmentation may."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        noise = random.random() + float(np.random.rand()) + float(torch.rand(()))
        return torch.tensor([float(index), noise]), index


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_resume_skips_to_the_same_batches():
    full = take(iter(TrainingBatchSampler(10, 3, seed=5, rank=0, world_size=1)), 9)
    resumed = take(iter(TrainingBatchSampler(10, 3, seed=5, rank=0, world_size=1, start_iter=5)), 4)
    assert resumed == full[5:]
    epoch0 = sorted(i for batch in full[:4] for _, i in batch)
    assert epoch0 == list(range(10))  # 4 batches of 3, the last one short: one epoch
    other_seed = take(iter(TrainingBatchSampler(10, 3, seed=6, rank=0, world_size=1)), 4)
    assert [i for b in other_seed for _, i in b] != [i for b in full[:4] for _, i in b]


def test_ranks_split_each_epoch_like_distributed_sampler():
    samplers = [TrainingBatchSampler(10, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    assert samplers[0].iters_per_epoch == 3
    shards = [[i for b in take(iter(s), 3) for _, i in b] for s in samplers]
    assert sorted(shards[0] + shards[1]) == list(range(10))
    whole = TrainingBatchSampler(10, 2, seed=1, rank=0, world_size=1).epoch_indices(0)
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]


def test_augmentations_do_not_depend_on_workers_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    random.seed(0)
    before = torch.rand(3), random.random()
    torch.manual_seed(0)
    random.seed(0)
    main = [x for x, _ in take(iter(build_train_loader(RandomlyAugmented(), 4, seed=3)), 5)]
    # the model's own random stream (dropout) is where it was before loading
    assert torch.equal(torch.rand(3), before[0]) and random.random() == before[1]
    workers = [x for x, _ in take(iter(build_train_loader(RandomlyAugmented(), 4, seed=3, num_workers=2)), 5)]
    for a, b in zip(main, workers):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    resumed = [x for x, _ in take(iter(build_train_loader(RandomlyAugmented(), 4, seed=3, start_iter=3)), 2)]
    for a, b in zip(main[3:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    noise = torch.cat(main)[:, 1]
    assert len(set(noise.tolist())) == len(noise)  # every sample drew a fresh value


def test_a_sample_draws_the_same_augmentation_on_any_rank_and_in_any_batch():
    def drawn(batch_size, world_size):
        values = {}
        for rank in range(world_size):
            sampler = TrainingBatchSampler(10, batch_size, seed=2, rank=rank, world_size=world_size)
            for batch in take(iter(sampler), sampler.iters_per_epoch):
                for x, index in SeededDataset(RandomlyAugmented()).__getitems__(batch):
                    values[index] = float(x[1])
        return values

    one = drawn(4, 1)
    assert sorted(one) == list(range(10))
    assert drawn(2, 2) == one and drawn(5, 1) == one


def test_bad_batch_sizes_are_explained():
    with pytest.raises(ValueError, match="empty"):
        TrainingBatchSampler(0, 2, rank=0, world_size=1)
    with pytest.raises(ValueError, match="drop_last"):
        TrainingBatchSampler(3, 4, drop_last=True, rank=0, world_size=1)


def test_test_loader_keeps_order_and_every_sample():
    labels = [y for _, ys in build_test_loader(RandomlyAugmented(), 4) for y in ys.tolist()]
    assert labels == list(range(10))

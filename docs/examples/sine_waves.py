"""A complete user dataset plugin: noisy sine waves, classified by frequency.

Load it with ``--plugin sine_waves.py`` (or ``import sine_waves`` at the top of a gin file),
then ``Data.dataset = 'SineWaves'``. Check it with
``python -m flexcore.registry --plugin sine_waves.py check datasets SineWaves``.
Walk-through: docs/datasets.md, "Writing your own dataset".
"""
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from flexcore.data import SPLITS, DatasetMetadata, holdout_indices
from flexcore.registry import DATASETS

FREQUENCIES = (1.0, 2.0, 3.0, 5.0)  # cycles per sequence; the class is the index


@DATASETS.register()
class SineWaves(Dataset):
    """Noisy sine waves of one channel; the label is which of four frequencies it has.

    Args:
        root: unused (generated data); part of the dataset contract.
        split: ``"train"``, ``"val"`` or ``"test"``.
        length: samples per sequence.
        noise: standard deviation of the added Gaussian noise.
        train_samples: generated training pool; ``val`` is a seeded hold-out of it.
        test_samples: generated separately, from its own seed.
        val_fraction: share of the pool held out for ``val``.
        seed: every sample and the hold-out follow from it.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        length: int = 128,
        noise: float = 0.3,
        train_samples: int = 800,
        test_samples: int = 200,
        val_fraction: float = 0.2,
        seed: int = 0,
    ):
        if split not in SPLITS:
            raise ValueError(f"SineWaves: unknown split {split!r}; use one of {SPLITS}.")
        self.metadata = self.describe(length=length, train_samples=train_samples,
                                      test_samples=test_samples, val_fraction=val_fraction)
        if split == "test":
            self.inputs, self.labels = _generate(test_samples, length, noise, seed + 1)
        else:
            inputs, labels = _generate(train_samples, length, noise, seed)
            # Stratified, seeded: the same hold-out on every run, worker and machine.
            train, val = holdout_indices(train_samples, val_fraction, seed, labels=labels.numpy())
            keep = torch.from_numpy(train if split == "train" else val)
            self.inputs, self.labels = inputs[keep], labels[keep]
        self.split = split

    @classmethod
    def describe(
        cls,
        length: int = 128,
        train_samples: int = 800,
        test_samples: int = 200,
        val_fraction: float = 0.2,
        **_ignored,  # root, noise, seed, ...: options that do not change the metadata
    ) -> DatasetMetadata:
        """Metadata without generating anything: models are built (and analysed) from it."""
        n_val = int(round(val_fraction * train_samples))  # what holdout_indices holds out
        return DatasetMetadata(
            name="SineWaves",
            in_channels=1,
            num_classes=len(FREQUENCIES),
            shape=(length,),
            split_sizes={"train": train_samples - n_val, "val": n_val, "test": test_samples},
            extras={"frequencies": FREQUENCIES},
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.inputs[index], int(self.labels[index])  # float32 (1, length), Python int


def _generate(count: int, length: int, noise: float, seed: int):
    """``count`` sequences ``(count, 1, length)`` float32 and their labels, from ``seed`` alone."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(FREQUENCIES), size=count)
    phases = rng.uniform(0, 2 * np.pi, size=(count, 1))
    t = np.linspace(0, 1, length, endpoint=False)
    waves = np.sin(2 * np.pi * np.asarray(FREQUENCIES)[labels][:, None] * t + phases)
    waves += noise * rng.standard_normal(waves.shape)
    return torch.from_numpy(waves[:, None, :].astype(np.float32)), torch.from_numpy(labels)

"""Datasets in their real published formats, transforms and loaders.

Importing this package registers every built-in dataset in ``flexcore.registry.DATASETS``.
"""
from .base import (
    SPLITS,
    CorruptDatasetError,
    DatasetError,
    DatasetMetadata,
    FakeDataset,
    MissingDatasetError,
    build_dataset,
    dataset_dir,
    default_root,
    describe_dataset,
    holdout_indices,
)

from . import transforms
from .images import ImageClassificationDataset

# Registering modules (import order = listing order does not matter; names are sorted).
from .cifar import CIFAR10, CIFAR100
from .digits import Digits

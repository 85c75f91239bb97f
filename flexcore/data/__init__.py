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

# Sequence and audio datasets (registering modules).
from . import synthetic  # noqa: E402,F401  AddingProblem, CopyMemory

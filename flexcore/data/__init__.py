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

from . import transforms  # noqa: E402
from .images import ImageClassificationDataset  # noqa: E402

# Image datasets (registering modules).
from .cifar import CIFAR10, CIFAR100  # noqa: E402,F401
from .digits import Digits, SDigits  # noqa: E402,F401
from .imagenet import ImageNet8, ImageNet16, ImageNet32, ImageNet64  # noqa: E402,F401
from .mnist import MNIST  # noqa: E402,F401
from .sequential_images import PMNIST, SCIFAR10, SMNIST, NoisePaddedCIFAR10  # noqa: E402,F401
from .stl10 import STL10  # noqa: E402,F401

# Sequence and audio datasets (registering modules).
from . import synthetic  # noqa: E402,F401  AddingProblem, CopyMemory
from . import speech_commands  # noqa: E402,F401  SpeechCommands
from . import uea  # noqa: E402,F401  CharacterTrajectories

from .check import check_dataset  # noqa: E402,F401  the contract checker for user datasets

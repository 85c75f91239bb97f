"""Images read as sequences: sMNIST, pMNIST, sCIFAR-10 and noise-padded sCIFAR-10.

They read the same files as :class:`~flexcore.data.MNIST` / :class:`~flexcore.data.CIFAR10`
and take the same options; each sample goes through the image pipeline (normalisation,
augmentation if asked) and is then flattened. The original did the flattening in its
training loop; here the dataset does it, so any model or loader sees the right shape.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from flexcore.registry import DATASETS

from .cifar import CIFAR10
from .images import replace_metadata
from .mnist import _MNISTFiles

__all__ = ["SMNIST", "PMNIST", "SCIFAR10", "NoisePaddedCIFAR10", "permutation", "padding_noise"]

NOISE_PADDED_LENGTH = 1000


def permutation(length: int, seed: int) -> np.ndarray:
    """The pixel order of pMNIST: ``np.random.RandomState(seed).permutation(length)``.

    The original drew ``np.random.permutation(784)`` from the global numpy generator after
    seeding it with the run's seed; with nothing drawn before, that is this permutation.
    """
    return np.random.RandomState(seed).permutation(length)


def padding_noise(features: int, steps: int, seed: int) -> torch.Tensor:
    """The fixed Gaussian padding of noise-padded sCIFAR-10, ``(features, steps)``.

    Drawn as the original's ``randn(1, steps, features)`` (from a generator seeded with
    ``seed`` instead of the global one) and transposed to channels-first.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, steps, features, generator=gen)[0].t().contiguous()


@DATASETS.register()
class SMNIST(_MNISTFiles):
    """Sequential MNIST: each image read pixel by pixel, row-major, as a (1, 784) sequence."""

    @classmethod
    def _sample_shape(cls, hw: Tuple[int, int]):
        return (hw[0] * hw[1],), cls.IN_CHANNELS

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


@DATASETS.register(aliases=("psMNIST",))
class PMNIST(SMNIST):
    """Permuted sequential MNIST: sMNIST with one fixed pixel permutation, the same for every split.

    Args:
        permutation_seed: seed of the permutation (see :func:`permutation`). The original
            re-drew the permutation for its final test (a quirk of its `datasets/` code); here it never changes.
        (other arguments: see :class:`~flexcore.data.images.ImageClassificationDataset`)
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        augment: Any = "none",
        resolution=None,
        interpolation: str = "bilinear",
        blur_sigma: float = 0.0,
        normalize: str = "reference",
        cutout_length: Optional[int] = None,
        val_fraction: Optional[float] = None,
        split_seed: int = 0,
        val_source: str = "holdout",
        download: bool = False,
        permutation_seed: int = 0,
    ):
        self.permutation_seed = int(permutation_seed)
        super().__init__(**self.base_options(locals()))
        self.permutation = torch.as_tensor(permutation(self.metadata.shape[0], self.permutation_seed))

    def _extra_options(self) -> Dict[str, Any]:
        return {"permutation_seed": self.permutation_seed}

    @classmethod
    def describe(cls, permutation_seed: int = 0, **options: Any):
        return replace_metadata(super().describe(**options), extras={"permutation_seed": int(permutation_seed)})

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)[:, self.permutation]


@DATASETS.register()
class SCIFAR10(CIFAR10):
    """Sequential CIFAR-10: each image read pixel by pixel, row-major, as a (3, 1024) sequence."""

    @classmethod
    def _sample_shape(cls, hw: Tuple[int, int]):
        return (hw[0] * hw[1],), cls.IN_CHANNELS

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


@DATASETS.register()
class NoisePaddedCIFAR10(CIFAR10):
    """Noise-padded sCIFAR-10: 32 image rows as 96-feature steps, then 968 steps of fixed noise: (96, 1000).

    Step ``t < 32`` holds row ``t`` of the normalised image, channel-major (feature
    ``c * 32 + w``); steps 32..999 hold Gaussian noise drawn once from ``noise_seed`` and
    shared by every sample and split (the original re-drew it for its final test).

    Args:
        noise_seed: seed of the padding noise (see :func:`padding_noise`).
        (other arguments: see :class:`~flexcore.data.images.ImageClassificationDataset`;
        ``resolution`` must stay 32)
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        augment: Any = "none",
        resolution=None,
        interpolation: str = "bilinear",
        blur_sigma: float = 0.0,
        normalize: str = "reference",
        cutout_length: Optional[int] = None,
        val_fraction: Optional[float] = None,
        split_seed: int = 0,
        val_source: str = "holdout",
        download: bool = False,
        noise_seed: int = 0,
    ):
        self.noise_seed = int(noise_seed)
        super().__init__(**self.base_options(locals()))
        self.noise = padding_noise(96, NOISE_PADDED_LENGTH - 32, self.noise_seed)

    def _extra_options(self) -> Dict[str, Any]:
        return {"noise_seed": self.noise_seed}

    @classmethod
    def _sample_shape(cls, hw: Tuple[int, int]):
        if tuple(hw) != (32, 32):
            raise ValueError(f"NoisePaddedCIFAR10 is defined on 32x32 images; resolution={hw} is not supported")
        return (NOISE_PADDED_LENGTH,), 96

    @classmethod
    def describe(cls, noise_seed: int = 0, **options: Any):
        return replace_metadata(super().describe(**options), extras={"noise_seed": int(noise_seed)})

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape
        rows = x.permute(1, 0, 2).reshape(h, c * w).t()  # (96, 32): step = row, feature = c * 32 + w
        return torch.cat([rows, self.noise], dim=1)

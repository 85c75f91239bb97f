"""Tiny real components for engine tests, loadable as a plugin (``--plugin tests/engine/tiny_plugin.py``).

- ``TinyShapes``: in-memory images of bars (horizontal, vertical, diagonal, anti-diagonal)
  with noise, rendered at any ``resolution``; the class is the bar's orientation.
- ``TinySum``: a regression task (sequence -> sum of its values).
- ``TinyGaussMask`` (in MASKS), ``TinyCKConv``: a small continuous conv honouring the
  ContinuousConv contract (``kernel_size()``, ``generate_kernel()``, ``set_resolution``),
  used only where ``flexcore.layers`` has no FlexConv yet.
- ``TinyNet``: conv -> norm -> relu -> conv -> pool -> linear, with small real FlexConvs
  (MAGNet kernels, Gaussian masks, horizon 9) by default.
"""
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from flexcore.data.base import DatasetMetadata
from flexcore.registry import BACKBONES, DATASETS, MASKS


def _bars(resolution: int, label: int, gen: torch.Generator, noise: float) -> torch.Tensor:
    img = torch.zeros(resolution, resolution)
    offset = int(torch.randint(resolution // 4, resolution - resolution // 4, (1,), generator=gen))
    idx = torch.arange(resolution)
    if label == 0:
        img[offset, :] = 1.0
    elif label == 1:
        img[:, offset] = 1.0
    elif label == 2:
        img[idx, idx] = 1.0
    else:
        img[idx, resolution - 1 - idx] = 1.0
    return (img + noise * torch.randn(resolution, resolution, generator=gen)).unsqueeze(0)


@DATASETS.register()
class TinyShapes(Dataset):
    """Bars of 4 orientations with Gaussian noise, ``(1, resolution, resolution)``."""

    SIZES = {"train": 128, "val": 48, "test": 64}

    def __init__(self, root=None, split="train", resolution: int = 8, noise: float = 0.3, size: int = 0,
                 label_noise: float = 0.0):
        self.metadata = self.describe(resolution=resolution)
        n = size or self.SIZES[split]
        gen = torch.Generator().manual_seed({"train": 1, "val": 2, "test": 3}[split])
        self.labels = torch.randint(0, 4, (n,), generator=gen)
        self.images = torch.stack([_bars(resolution, int(y), gen, noise) for y in self.labels])
        if label_noise:
            flip = torch.rand(n, generator=gen) < label_noise
            self.labels[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=gen)

    @classmethod
    def describe(cls, resolution: int = 8, **_):
        return DatasetMetadata("TinyShapes", 1, 4, (resolution, resolution), split_sizes=dict(cls.SIZES))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


@DATASETS.register()
class TinySum(Dataset):
    """Regression: ``(1, length)`` uniform values -> their sum."""

    def __init__(self, root=None, split="train", length: int = 16):
        self.metadata = self.describe(length=length)
        gen = torch.Generator().manual_seed({"train": 4, "val": 5, "test": 6}[split])
        self.x = torch.rand(64, 1, length, generator=gen)
        self.y = self.x.sum(dim=(1, 2))

    @classmethod
    def describe(cls, length: int = 16, **_):
        return DatasetMetadata("TinySum", 1, 1, (length,), task="regression", loss="mse")

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@MASKS.register()
class TinyGaussMask(nn.Module):
    """Separable Gaussian with one learnable width per dim."""

    def __init__(self, dim: int, causal: bool = False, init_sigma: float = 0.3, threshold: float = 0.1):
        super().__init__()
        self.sigma = nn.Parameter(torch.full((dim,), init_sigma))
        self.threshold = threshold

    def forward(self, positions):  # (1, dim, *grid) -> (1, 1, *grid)
        sig = self.sigma.view(1, -1, *([1] * (positions.dim() - 2)))
        return torch.exp(-0.5 * (positions / sig) ** 2).prod(dim=1, keepdim=True)

    def extent(self):
        return (self.sigma.detach().abs() * math.sqrt(-2 * math.log(self.threshold))).tolist()


class TinyCKConv(nn.Module):
    """A continuous conv: MLP kernel on a [-1,1] grid, Gaussian mask, dynamic crop."""

    def __init__(self, in_channels, out_channels, dim=2, horizon=9, hidden=8):
        super().__init__()
        self.in_channels, self.out_channels, self.dim = in_channels, out_channels, dim
        self.horizon = horizon
        self.sampling_rate_norm = 1.0
        self.kernel_net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, in_channels * out_channels))
        self.mask = TinyGaussMask(dim)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_kernel = None

    def kernel_size(self):
        sizes = []
        for r in self.mask.extent():
            coords = torch.linspace(-1, 1, self.horizon)
            keep = int((coords.abs() <= r).sum())
            keep = max(1, keep if keep % 2 else keep + 1)
            sizes.append(min(keep, self.horizon))
        return tuple(sizes)

    def generate_kernel(self):
        axes = [torch.linspace(-1, 1, self.horizon)[(self.horizon - k) // 2:(self.horizon + k) // 2] for k in self.kernel_size()]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij")).unsqueeze(0).to(self.bias.device)
        values = self.kernel_net(grid.flatten(2).transpose(1, 2))  # (1, N, Cout*Cin)
        kernel = values.transpose(1, 2).reshape(self.out_channels, self.in_channels, *grid.shape[2:])
        return self.sampling_rate_norm * kernel * self.mask(grid)[0]

    def set_resolution(self, horizon, sampling_rate_norm):
        self.horizon, self.sampling_rate_norm = horizon, sampling_rate_norm

    def forward(self, x):
        self.conv_kernel = self.generate_kernel()
        return F.conv2d(x, self.conv_kernel, self.bias, padding="same")


def tiny_flexconv():
    """A small FlexConv factory (MAGNet with 8 hidden units, mask starting at 5x5 of 9), or TinyCKConv."""
    try:
        from flexcore.layers import FlexConv, GaussianMask
        from flexcore.layers.kernels import MAGNet
    except ImportError:
        return TinyCKConv
    return functools.partial(
        FlexConv, kernel_net=functools.partial(MAGNet, hidden_channels=8, input_scale=25.6),
        mask=functools.partial(GaussianMask, init_value=0.25), horizon=9,
    )


@BACKBONES.register()
class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> conv -> ReLU -> global pool -> linear; ``dropout`` before the head."""

    def __init__(self, in_channels, out_channels, dim, conv=None, width=8, dropout=0.0):
        super().__init__()
        conv = conv or tiny_flexconv()
        if dim == 1:
            self.body = nn.Sequential(nn.Conv1d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
        else:
            self.body = nn.Sequential(conv(in_channels, width, dim), nn.BatchNorm2d(width), nn.ReLU(),
                                      conv(width, width, dim), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, out_channels)

    def forward(self, x):
        return self.head(self.dropout(self.body(x).flatten(1)))

"""Target functions a kernel net is fitted to (those of the original's `ckernel_fitting/`): analytic signals, random kernels, images.

Every target is sampled on ``size`` points per dim of ``linspace(lo, hi)`` (``extent``, by
default the kernel grid's own ``[-1, 1]``) and returned as ``(channels, *grid)`` float32.
Values lie in ``[0, 1]``, the range the original's PSNR clamps predictions to: signed
signals (sines, chirps, Gabor filters) are mapped by ``(f + 1) / 2`` unless
``value_range='signed'`` keeps them in ``[-1, 1]`` as the original did.

    target = make_target("gabor", size=33, freq=16.0)       # (1, 33, 33)
    image = make_target("image", size=64, image="cat.png", channels=3)
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import gin
import numpy as np
import torch

__all__ = ["TARGETS", "FREQUENCY_TARGETS", "make_target", "load_image", "target_label"]

Grid = Tuple[torch.Tensor, ...]


def _radius_sq(x: Grid) -> torch.Tensor:
    return sum(c * c for c in x)


def _gaussian(x: Grid, gauss_sigma: float, **_) -> torch.Tensor:
    # Centred, peak-normalised to 1 (the original's normalisation).
    return torch.exp(-0.5 * _radius_sq(x) / gauss_sigma**2)


def _sine(x: Grid, freq: float, **_) -> torch.Tensor:
    out = torch.ones_like(x[0])
    for c in x:
        out = out * torch.sin(freq * c)
    return out


def _chirp(x: Grid, freq: float, **_) -> torch.Tensor:
    # sin(freq * r^2): the frequency grows linearly from the centre (the original's Sinus;
    # its SineChirp is freq = 1).
    return torch.sin(freq * _radius_sq(x))


def _gabor(x: Grid, freq: float, gauss_sigma: float, **_) -> torch.Tensor:
    return _sine(x, freq) * _gaussian(x, gauss_sigma)


def _constant(x: Grid, **_) -> torch.Tensor:
    # Ones with two opposite quadrants (2D) / one half (1D) zero: a sharp-edged step.
    out = torch.ones_like(x[0])
    halves = [n // 2 for n in out.shape]
    if out.dim() == 1:
        out[halves[0]:] = 0.0
    else:
        out[halves[0]:, halves[1]:] = 0.0
        out[:halves[0], :halves[1]] = 0.0
    return out


def _sawtooth(x: Grid, **_) -> torch.Tensor:
    # Ones with every other sample zero along each dim: the highest frequency the grid holds.
    out = torch.ones_like(x[0])
    out[(slice(None, None, 2),) * out.dim()] = 0.0
    return out


# name -> (function, signed output)
TARGETS: Dict[str, Tuple[Callable[..., torch.Tensor], bool]] = {
    "gaussian": (_gaussian, False),
    "constant": (_constant, False),
    "sawtooth": (_sawtooth, False),
    "sine": (_sine, True),
    "chirp": (_chirp, True),
    "gabor": (_gabor, True),
    "random": (None, False),  # uniform noise (or an .npy file)
    "image": (None, False),   # any image file PIL reads
}
# Targets that have a frequency (a sweep over `freqs` applies to them).
FREQUENCY_TARGETS = ("sine", "chirp", "gabor")


def load_image(path: str, size: Sequence[int], channels: int = 1) -> torch.Tensor:
    """An image file as ``(channels, *size)`` in ``[0, 1]`` (grey for 1 channel, RGB for 3)."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Kernel fitting: image {path!r} not found (give any PNG/JPEG file PIL reads).")
    if channels not in (1, 3):
        raise ValueError(f"Kernel fitting: an image target has 1 (grey) or 3 (RGB) channels, got {channels}.")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((int(size[1]), int(size[0])), Image.Resampling.LANCZOS)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except OSError as exc:
        raise ValueError(f"Kernel fitting: cannot read image {path!r}: {exc}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def _random(shape: Sequence[int], channels: int, seed: int, random_file: Optional[str]) -> torch.Tensor:
    if random_file:
        values = torch.as_tensor(np.load(random_file), dtype=torch.float32)
        values = values.reshape(-1, *values.shape[-len(shape):]) if values.dim() > len(shape) else values.unsqueeze(0)
        if tuple(values.shape[1:]) != tuple(shape):
            raise ValueError(f"Kernel fitting: {random_file} holds shape {tuple(values.shape)}, expected (C, {shape}).")
        return values[:channels] if values.shape[0] >= channels else values.expand(channels, *shape).clone()
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((channels, *shape), generator=gen)


@gin.configurable(module="fitting")
def make_target(
    name: str,
    size: int = 33,
    dim: int = 2,
    channels: int = 1,
    freq: float = 4.0,
    gauss_sigma: float = 0.5,
    extent: Tuple[float, float] = (-1.0, 1.0),
    value_range: str = "unit",
    image: Optional[str] = None,
    random_file: Optional[str] = None,
    seed: int = 0,
) -> torch.Tensor:
    """Sample target ``name`` on a grid of ``size`` points per dim.

    Args:
        name: one of :data:`TARGETS`.
        size: samples per dim (33 = the paper's CIFAR kernel grid).
        dim: 1 (signals) or 2 (images, kernels); ``image`` targets are 2-D.
        channels: output channels (the kernel net's ``out_channels``); analytic targets repeat.
        freq: angular frequency (rad per unit of ``extent``) of sine/chirp/Gabor targets:
            ``sin(16 x)`` holds about 5 periods over ``[-1, 1]``.
        gauss_sigma: standard deviation of the Gaussian (and of the Gabor's envelope).
        extent: ``(lo, hi)`` range the targets are sampled over (the net always sees ``[-1, 1]``).
        value_range: ``"unit"`` maps signed targets to ``[0, 1]``; ``"signed"`` keeps ``[-1, 1]``.
        image: path of the image file for ``name="image"``.
        random_file: ``.npy`` array for ``name="random"`` (else ``U(0, 1)`` from ``seed``).
        seed: seed of the random target.

    Returns:
        ``(channels, *[size] * dim)`` float32.
    """
    key = name.lower()
    if key not in TARGETS:
        raise ValueError(f"Unknown kernel-fitting target {name!r}; use one of {sorted(TARGETS)}.")
    if dim not in (1, 2):
        raise ValueError(f"Kernel fitting targets are 1-D or 2-D, got dim={dim}.")
    if value_range not in ("unit", "signed"):
        raise ValueError(f"value_range must be 'unit' or 'signed', got {value_range!r}.")
    shape = (int(size),) * dim
    if key == "image":
        if dim != 2 or not image:
            raise ValueError("The 'image' target is 2-D and needs a file: make_target.image = 'path.png' (or --image).")
        return load_image(image, shape, channels)
    if key == "random":
        return _random(shape, channels, seed, random_file)
    fn, signed = TARGETS[key]
    coords = torch.linspace(float(extent[0]), float(extent[1]), int(size), dtype=torch.float64)
    grid = torch.meshgrid(*([coords] * dim), indexing="ij")
    values = fn(grid, freq=float(freq), gauss_sigma=float(gauss_sigma))
    if signed and value_range == "unit":
        values = (values + 1.0) / 2.0
    return values.to(torch.float32).unsqueeze(0).expand(channels, *shape).contiguous()


def target_label(name: str, freq: Optional[float] = None, image: Optional[str] = None) -> str:
    """A short file-name-safe label: ``gabor_f16``, ``image_cat``, ``random``."""
    key = name.lower()
    if key in FREQUENCY_TARGETS and freq is not None:
        return f"{key}_f{freq:g}".replace(".", "p")
    if key == "image" and image:
        return "image_" + "".join(ch if ch.isalnum() else "_" for ch in os.path.splitext(os.path.basename(image))[0])
    return key


"""Image transforms on tensors: the original's augmentations, cross-resolution resizing, blur.

Every transform maps an image ``(C, H, W)`` to an image; the deterministic ones
(:func:`gaussian_blur`, :func:`resize`, :func:`normalize`) also take batches ``(B, C, H, W)``
so an evaluator can resize a whole batch on the GPU. Random transforms draw from Python's
``random`` module (a draw costs 0.1 us there against ~8 us for a one-element torch
tensor); the training loader seeds it per sample from ``(seed, epoch, index)``
(:class:`flexcore.data.samplers.SeededDataset`), in the main process and in workers alike,
so augmentations are reproducible whatever the number of workers or ranks.

:func:`build_image_transform` assembles the per-sample pipeline every image dataset uses::

    image -> blur -> geometric augmentation -> normalise (to float) -> erasing -> resize

Flips and crops run on the stored uint8 values (cheaper; zero padding is the same black as
the original's PIL padding) and normalising converts to float in one fused step. Blur comes
first and resizing after augmentation, as in the original; resizing after normalising is
the same as before it (both are per-channel affine maps and resize weights sum to 1) and
lets Cutout act at the native resolution as the original's STL-10 pipeline does. The
pipeline stays in float: the original rounds to uint8 after PIL's blur and resize, so
values can differ from it by up to 1/255 before normalisation.
"""
from __future__ import annotations

import functools
import math
import random
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "AUGMENTATIONS",
    "INTERPOLATIONS",
    "blur_kernel_size",
    "gaussian_kernel1d",
    "gaussian_blur",
    "resize",
    "normalize",
    "to_float_image",
    "Normalize",
    "as_size",
    "Compose",
    "RandomApply",
    "RandomHorizontalFlip",
    "RandomCrop",
    "RandomRotation",
    "RandomTranslate",
    "RandomScale",
    "Cutout",
    "RandomErasing",
    "augmentation_stages",
    "build_image_transform",
]

AUGMENTATIONS = ("none", "resnet", "standard", "cutout")
INTERPOLATIONS = ("bilinear", "nearest")

Size = Union[int, Sequence[int]]
Transform = Callable[[torch.Tensor], torch.Tensor]


def as_size(size: Size) -> Tuple[int, int]:
    """``32`` -> ``(32, 32)``; ``(h, w)`` unchanged; rejects non-positive sizes."""
    hw = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"an image size must be a positive int or (height, width), got {size!r}")
    return hw


def to_float_image(image: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[0, 1]``; float input is returned as float32 unchanged."""
    if image.dtype == torch.uint8:
        return image.to(torch.float32).div_(scale)
    return image.to(torch.float32)


# -- deterministic, batched -----------------------------------------------------------------
def blur_kernel_size(sigma: float) -> int:
    """The original's kernel size for a Gaussian blur: ``2 * ceil(3 * sigma) + 1``."""
    return 2 * math.ceil(3.0 * sigma) + 1


def gaussian_kernel1d(sigma: float, kernel_size: Optional[int] = None) -> torch.Tensor:
    """Normalised Gaussian taps ``exp(-x^2 / 2 sigma^2)`` at ``x = -(k-1)/2 .. (k-1)/2``."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    k = blur_kernel_size(sigma) if kernel_size is None else int(kernel_size)
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2.0
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(torch.float32)


def gaussian_blur(images: torch.Tensor, sigma: float, kernel_size: Optional[int] = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (torchvision's ``GaussianBlur`` semantics).

    Args:
        images: ``(C, H, W)`` or ``(B, C, H, W)`` float.
        sigma: standard deviation in pixels; kernel size ``2 * ceil(3 sigma) + 1`` unless given.
    """
    taps = gaussian_kernel1d(sigma, kernel_size).to(images.device, images.dtype)
    k = taps.numel()
    pad = k // 2
    x = images.unsqueeze(0) if images.dim() == 3 else images
    b, c, h, w = x.shape
    if pad >= h or pad >= w:
        raise ValueError(
            f"blur sigma {sigma} needs a {k}x{k} kernel, too large for {h}x{w} images "
            f"(reflect padding needs kernel_size // 2 < image size); use a smaller sigma"
        )
    x = F.pad(x.reshape(b * c, 1, h, w), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, k))
    x = F.conv2d(x, taps.view(1, 1, k, 1))
    out = x.reshape(b, c, h, w)
    return out[0] if images.dim() == 3 else out


def resize(images: torch.Tensor, size: Size, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize to ``size`` like PIL: antialiased bilinear, or nearest with pixel-centre sampling.

    Args:
        images: ``(C, H, W)`` or ``(B, C, H, W)`` float.
        size: output ``(height, width)`` or one int for both.
        interpolation: ``"bilinear"`` (antialiased when shrinking, as PIL; within one uint8
            level of PIL, which rounds) or ``"nearest"`` (exactly PIL's pixel choice).
    """
    hw = as_size(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "nearest":
        rows = _nearest_indices(images.shape[-2], hw[0], images.device)
        cols = _nearest_indices(images.shape[-1], hw[1], images.device)
        return images.index_select(-2, rows).index_select(-1, cols)
    rows = _bilinear_matrix(images.shape[-2], hw[0]).to(images.device, images.dtype)
    cols = _bilinear_matrix(images.shape[-1], hw[1]).to(images.device, images.dtype)
    return rows @ images @ cols.t()


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` weights of torch's antialiased bilinear resize (PIL's filter) along one axis.

    Resizing is linear and separable, so two small matrix products replace ``F.interpolate``
    (3x faster on single images, where the per-call overhead dominates); the weights are
    read off ``F.interpolate`` resizing the identity matrix along its rows (W @ I = W), so
    both agree to rounding.
    """
    eye = torch.eye(n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    weights = F.interpolate(eye, size=(n_out, n_in), mode="bilinear", align_corners=False, antialias=True)
    return weights.view(n_out, n_in).to(torch.float32)


@functools.lru_cache(maxsize=64)
def _pil_nearest_table(n_in: int, n_out: int) -> Tuple[int, ...]:
    # PIL (ImagingScaleAffine) walks x = step/2, x += step in float64 and truncates; its ties
    # therefore fall either way, so neither torch mode ("nearest" floors i*step,
    # "nearest-exact" floors (i+1/2)*step) reproduces it. Replaying the walk does.
    step = float(n_in) / n_out
    x, table = step * 0.5, []
    for _ in range(n_out):
        table.append(min(max(int(x), 0), n_in - 1))
        x += step
    return tuple(table)


def _nearest_indices(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """Source pixel of each output pixel for PIL's nearest-neighbour resize."""
    return torch.tensor(_pil_nearest_table(n_in, n_out), dtype=torch.long, device=device)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel for ``(C, H, W)`` or ``(B, C, H, W)`` (any trailing dims)."""
    c_dim = -3 if images.dim() >= 3 else 0
    shape = [1] * images.dim()
    shape[c_dim] = -1
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return (images - m) / s


# -- per-sample transforms ---------------------------------------------------------------------
class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class _Deterministic:
    def __init__(self, fn: Callable[..., torch.Tensor], name: str, **kwargs):
        self.fn, self.name, self.kwargs = fn, name, kwargs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, **self.kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.name}({args})"


def _uniform(low: float, high: float) -> float:
    return random.uniform(low, high)


def _randint(low: int, high: int) -> int:
    """Integer in ``[low, high)``."""
    return random.randrange(low, high)


class Normalize:
    """To float and ``(x - mean) / std`` per channel in one step; integer inputs are first divided by ``scale``.

    ``mean``/``std`` ``None`` only converts to float (``x / scale`` for integer inputs).
    """

    def __init__(self, mean: Optional[Sequence[float]], std: Optional[Sequence[float]], scale: float = 255.0):
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.scale = float(scale)
        m = torch.tensor(self.mean or (0.0,), dtype=torch.float64).view(-1, 1, 1)
        sd = torch.tensor(self.std or (1.0,), dtype=torch.float64).view(-1, 1, 1)
        # x_float * gain + shift, computed in float64 then rounded once
        self._float_gain = (1.0 / sd).float()
        self._int_gain = (1.0 / (sd * self.scale)).float()
        self._shift = (-m / sd).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gain = self._float_gain if x.is_floating_point() else self._int_gain
        x = x.to(torch.float32)
        if self.mean is None:
            return x if gain is self._float_gain else x.mul(gain)
        return torch.addcmul(self._shift.to(x.device), x, gain.to(x.device))

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomApply:
    """Apply ``transform`` with probability ``p``."""

    def __init__(self, transform: Transform, p: float = 0.5):
        self.transform, self.p = transform, p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x) if random.random() < self.p else x

    def __repr__(self) -> str:
        return f"RandomApply({self.transform!r}, p={self.p})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if random.random() < self.p else x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then crop a random ``size`` window (torchvision's RandomCrop)."""

    def __init__(self, size: Size, padding: int = 0, fill: float = 0.0):
        self.size, self.padding, self.fill = as_size(size), int(padding), fill

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        th, tw = self.size
        h, w = x.shape[-2:]
        if h + 2 * p < th or w + 2 * p < tw:
            raise ValueError(f"RandomCrop of {self.size} from a {h}x{w} image padded by {p}")
        i = _randint(0, h + 2 * p - th + 1)  # window origin in padded coordinates
        j = _randint(0, w + 2 * p - tw + 1)
        # One pad call with signed amounts pads and crops at once (negative = crop).
        return F.pad(x, (p - j, j + tw - w - p, p - i, i + th - h - p), value=self.fill)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


def _affine(x: torch.Tensor, angle: float = 0.0, translate=(0, 0), scale: float = 1.0) -> torch.Tensor:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    return TF.affine(
        x, angle=angle, translate=list(translate), scale=scale, shear=[0.0, 0.0],
        interpolation=InterpolationMode.NEAREST, fill=0.0,
    )


class RandomRotation:
    """Rotate by an angle uniform in ``[-degrees, degrees]`` about the centre (nearest, zero fill)."""

    def __init__(self, degrees: float):
        self.degrees = float(degrees)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _affine(x, angle=_uniform(-self.degrees, self.degrees))

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees})"


class RandomTranslate:
    """Shift by whole pixels, uniform in ``±fraction * size`` per axis, rounded (torchvision's RandomAffine)."""

    def __init__(self, fraction: Tuple[float, float]):
        self.fraction = tuple(float(f) for f in fraction)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        max_dx, max_dy = self.fraction[0] * w, self.fraction[1] * h
        tx = int(round(_uniform(-max_dx, max_dx)))
        ty = int(round(_uniform(-max_dy, max_dy)))
        return _affine(x, translate=(tx, ty))

    def __repr__(self) -> str:
        return f"RandomTranslate(fraction={self.fraction})"


class RandomScale:
    """Zoom about the centre by a factor uniform in ``scale`` (nearest, zero fill)."""

    def __init__(self, scale: Tuple[float, float]):
        self.scale = (float(scale[0]), float(scale[1]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _affine(x, scale=_uniform(*self.scale))

    def __repr__(self) -> str:
        return f"RandomScale(scale={self.scale})"


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` centred uniformly over the image, clipped at the borders.

    The original's Cutout (DeVries & Taylor 2017): applied after normalisation, so holes are
    0 in normalised units; an odd ``length`` gives holes of ``length - 1`` (``±length // 2``).
    """

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes, self.length = int(n_holes), int(length)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x.clone()
        half = self.length // 2
        for _ in range(self.n_holes):
            cy, cx = _randint(0, h), _randint(0, w)
            y1, y2 = min(max(cy - half, 0), h), min(max(cy + half, 0), h)
            x1, x2 = min(max(cx - half, 0), w), min(max(cx + half, 0), w)
            x[..., y1:y2, x1:x2] = 0.0
        return x

    def __repr__(self) -> str:
        return f"Cutout(n_holes={self.n_holes}, length={self.length})"


class RandomErasing:
    """With probability ``p``, set a random rectangle to ``value`` (torchvision's RandomErasing).

    The rectangle covers ``area * U(scale)`` pixels with aspect ratio ``exp(U(log ratio))``;
    up to 10 draws until it fits, else the image is left unchanged.
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Tuple[float, float] = (0.02, 0.33),
        ratio: Tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
    ):
        self.p, self.scale, self.ratio, self.value = p, tuple(scale), tuple(ratio), value

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if random.random() >= self.p:
            return x
        h, w = x.shape[-2:]
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = h * w * _uniform(*self.scale)
            aspect = math.exp(_uniform(*log_ratio))
            eh = int(round(math.sqrt(area * aspect)))
            ew = int(round(math.sqrt(area / aspect)))
            if not (eh < h and ew < w):
                continue
            i = _randint(0, h - eh + 1)
            j = _randint(0, w - ew + 1)
            x = x.clone()
            x[..., i : i + eh, j : j + ew] = self.value
            return x
        return x

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value})"


# -- pipelines --------------------------------------------------------------------------------
def augmentation_stages(
    augment: Union[str, None, Transform],
    size: Size,
    cutout_length: Optional[int] = None,
    resnet_cutout: bool = False,
) -> Tuple[List[Transform], List[Transform]]:
    """The original's augmentations as (geometric stages on ``[0, 1]`` images, erasing stages after normalising).

    Args:
        augment: ``"none"`` (also ``None``/``"None"``), ``"resnet"`` (flip + RandomCrop padded by
            ``size // 8``), ``"cutout"`` (``resnet`` + Cutout), ``"standard"`` (each with p 0.5:
            rotation ±30°, translation ±2/28 of the size, zoom [0.75, 1]; then RandomErasing
            p 0.5 of 4/28 of the area, square, value 0), or a callable applied to the ``[0, 1]``
            image (a gin-configurable augmentation of your own).
        size: native ``(height, width)`` of the images.
        cutout_length: hole side for ``cutout`` (and ``resnet`` with ``resnet_cutout``);
            default half the image height.
        resnet_cutout: ``resnet`` also cuts one hole (the original's STL-10 recipe).
    """
    h, w = as_size(size)
    if augment is None or (isinstance(augment, str) and augment.lower() == "none"):
        return [], []
    if callable(augment):
        return [augment], []
    name = augment.lower()
    length = int(cutout_length) if cutout_length else max(1, h // 2)
    if name in ("resnet", "cutout"):
        geometric = [RandomHorizontalFlip(), RandomCrop((h, w), padding=h // 8)]
        erasing = [Cutout(1, length)] if (name == "cutout" or resnet_cutout) else []
        return geometric, erasing
    if name == "standard":
        geometric = [
            RandomApply(RandomRotation(30.0), p=0.5),
            RandomApply(RandomTranslate((2 / 28.0, 2 / 28.0)), p=0.5),
            RandomApply(RandomScale((0.75, 1.0)), p=0.5),
        ]
        erasing = [RandomErasing(p=0.5, scale=(4 / 28.0, 4 / 28.0), ratio=(1.0, 1.0), value=0.0)]
        return geometric, erasing
    raise ValueError(
        f"Unknown augmentation {augment!r}; use one of {AUGMENTATIONS} or pass a callable "
        f"(e.g. a gin configurable) mapping a (C, H, W) image in [0, 1] to an image."
    )


def build_image_transform(
    mean: Optional[Sequence[float]],
    std: Optional[Sequence[float]],
    size: Size,
    augment: Union[str, None, Transform] = "none",
    resolution: Optional[Size] = None,
    interpolation: str = "bilinear",
    blur_sigma: float = 0.0,
    cutout_length: Optional[int] = None,
    resnet_cutout: bool = False,
    input_scale: float = 255.0,
) -> Compose:
    """The per-sample pipeline of the image datasets (see the module docstring for the order).

    Args:
        mean, std: per-channel normalisation; ``None`` only converts to float in ``[0, 1]``.
        size: native ``(height, width)`` of the stored images.
        augment: see :func:`augmentation_stages`; pass ``"none"`` for evaluation splits.
        resolution: output size (int or ``(h, w)``); ``None`` keeps the native size.
        interpolation: ``"bilinear"`` (antialiased) or ``"nearest"``.
        blur_sigma: Gaussian blur (kernel ``2 ceil(3 sigma) + 1``) applied first when > 0.
        cutout_length, resnet_cutout: see :func:`augmentation_stages`.
        input_scale: value of white in integer inputs (255 for uint8 images).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
    geometric, erasing = augmentation_stages(augment, size, cutout_length, resnet_cutout)
    stages: List[Transform] = []
    if blur_sigma > 0 or callable(augment):  # these need float images in [0, 1]
        stages.append(_Deterministic(to_float_image, "ToFloat", scale=input_scale))
    if blur_sigma > 0:
        stages.append(_Deterministic(gaussian_blur, "GaussianBlur", sigma=float(blur_sigma)))
    stages += geometric
    stages.append(Normalize(mean, std, scale=input_scale))
    stages += erasing
    if resolution is not None and as_size(resolution) != as_size(size):
        stages.append(_Deterministic(resize, "Resize", size=as_size(resolution), interpolation=interpolation))
    return Compose(stages)

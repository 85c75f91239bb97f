"""Kernel dynamics during training: what the continuous convs' kernels and masks do, for TensorBoard.

The trainer's ``KernelSizeLogger`` hook calls these at its log period and after each
validation (never per step); they put into the event storage, and the writers persist:

    put_kernel_scalars(model, storage)    # mask mean/width, energy outside the crop, paths, cost
    put_kernel_images(model, storage)     # kernel and mask images, histograms

Scalars per continuous conv (``[/<d>]``: one per spatial dim, none for 1-D layers):
``mask_mean/<layer>[/<d>]``, ``mask_sigma/<layer>[/<d>]`` (``mask_width/...`` for masks
whose width parameter is called ``width``), ``energy_outside_crop/<layer>`` (share of the
kernel's energy on the full grid that the crop leaves out). Per model:
``conv_path/fft`` and ``conv_path/direct`` (layers whose latest training forward took that
path), ``kernel_generation/ms`` and ``kernel_generation/share`` (see
:func:`time_kernel_generation`).
"""
from __future__ import annotations

import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.layers import continuous_convs
from flexcore.utils.modules import eval_mode

__all__ = [
    "put_kernel_scalars",
    "put_kernel_images",
    "time_kernel_generation",
    "kernel_image",
    "mask_image",
]

_MIN_TILE = 128  # pixels: small grids are scaled up to about this size
_MAX_SIDE = 256  # pixels per kernel axis: longer grids are averaged down
_CROPPED_AWAY = (0.82, 0.82, 0.82)  # grey: grid positions outside the crop


def _fixed_convs(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Continuous convs whose grid is fixed (a forward ran)."""
    out = []
    for name, conv in continuous_convs(model):
        try:
            conv.grid_size()
        except RuntimeError:
            continue
        out.append((name, conv))
    return out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_kernel_generation(model: nn.Module) -> Optional[float]:
    """Seconds to generate every continuous conv's kernel once, forward and backward.

    What is timed: each layer's kernel net and mask on its current (cropped) grid, and the
    gradient of the kernels with respect to their parameters (``torch.autograd.grad``: no
    ``.grad`` is touched), in eval mode; not the kernels' FFTs or the convolutions. On a GPU
    the device is synchronised before and after (one measurement, at log time only).
    None for a model without continuous convs.
    """
    convs = [conv for _, conv in _fixed_convs(model)]
    if not convs:
        return None
    params = [p for conv in convs for p in conv.parameters() if p.requires_grad]
    device = next((p.device for p in params), torch.device("cpu"))
    _synchronize(device)
    start = time.perf_counter()
    with torch.enable_grad(), eval_mode(*convs):
        kernels = [conv.generate_kernel() for conv in convs]
        total = sum(k.float().sum() for k in kernels)
        if params and total.requires_grad:
            torch.autograd.grad(total, params, allow_unused=True)
    _synchronize(device)
    return time.perf_counter() - start


def _per_dim(name: str, values: Sequence[float], storage) -> None:
    if len(values) == 1:
        storage.put_scalar(name, values[0], smoothing_hint=False)
        return
    for d, value in enumerate(values):
        storage.put_scalar(f"{name}/{d}", value, smoothing_hint=False)


def put_kernel_scalars(model: nn.Module, storage, timing: bool = True) -> int:
    """Put the per-layer and per-model kernel scalars (see the module doc) into ``storage``.

    Every device value of every layer comes to the host in one copy. With ``timing``, also
    times kernel generation and, where the storage has step times (``time``), its share of
    the median step. Returns the number of layers reported.
    """
    convs = _fixed_convs(model)
    if not convs:
        return 0
    pieces: List[torch.Tensor] = []
    layout: List[Tuple[str, str, int]] = []  # (layer, key, length) in the order of `pieces`
    for name, conv in convs:
        described = conv.mask.describe() if conv.mask is not None else {}
        for key in ("mean", "sigma", "width"):
            if key in described:
                pieces.append(described[key].float().flatten())
                layout.append((name, key, described[key].numel()))
        pieces.append(conv.energy_outside_crop().float().reshape(1))
        layout.append((name, "energy", 1))
    host = torch.cat(pieces).cpu().tolist()
    offset = 0
    for name, key, length in layout:
        values = host[offset: offset + length]
        offset += length
        if key == "energy":
            storage.put_scalar(f"energy_outside_crop/{name}", values[0], smoothing_hint=False)
        else:
            _per_dim(f"mask_{key}/{name}", values, storage)
    paths = [conv.last_path for _, conv in convs]
    if any(paths):
        storage.put_scalar("conv_path/fft", paths.count("fft"), smoothing_hint=False)
        storage.put_scalar("conv_path/direct", paths.count("direct"), smoothing_hint=False)
    if timing:
        seconds = time_kernel_generation(model)
        if seconds is not None:
            storage.put_scalar("kernel_generation/ms", 1000 * seconds, smoothing_hint=False)
            if "time" in storage.histories():
                step = float(storage.history("time").median(20))
                if step > 0:
                    storage.put_scalar("kernel_generation/share", min(seconds / step, 1.0), smoothing_hint=False)
    return len(convs)


# ---------------------------------------------------------------- images
def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _colour(values: torch.Tensor, cmap: str, lo: float, hi: float) -> torch.Tensor:
    """``(*S)`` values -> ``(3, *S)`` RGB in [0, 1] through a matplotlib colour map."""
    scaled = ((values.float() - lo) / max(hi - lo, 1e-12)).clamp(0, 1).numpy()
    return torch.from_numpy(_colormap(cmap)(scaled)[..., :3]).float().movedim(-1, 0)


def _fit(image: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` scaled up (nearest) so small grids are visible, long axes averaged down."""
    h, w = image.shape[1:]
    if max(h, w) > _MAX_SIDE:
        image = F.interpolate(image[None], size=(min(h, _MAX_SIDE), min(w, _MAX_SIDE)), mode="area")[0]
        h, w = image.shape[1:]
    scale = max(1, math.ceil(_MIN_TILE / max(h, w)))
    return image.repeat_interleave(scale, 1).repeat_interleave(scale, 2) if scale > 1 else image


def _plane(t: torch.Tensor) -> torch.Tensor:
    """The last two dims of a kernel slice (3-D: its central plane); 1-D: one row."""
    while t.dim() > 2:
        t = t[t.shape[0] // 2]
    return t[None] if t.dim() == 1 else t


def _on_full_grid(conv, kernel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The cropped kernel ``(C_out, C_in, *crop)`` placed on the full grid, and where it lies."""
    full = kernel.new_zeros(*kernel.shape[:2], *conv.grid_size())
    inside = torch.zeros(conv.grid_size(), dtype=torch.bool)
    index = (slice(None), slice(None), *conv.crop())
    full[index] = kernel
    inside[index[2:]] = True
    return full, inside


def _join(tiles: Sequence[torch.Tensor], gap: int = 3) -> torch.Tensor:
    """Tiles side by side (1-D kernels: one under the other), white between them."""
    vertical = tiles[0].shape[1] * 4 < tiles[0].shape[2]  # wide strips stack
    dim = 1 if vertical else 2
    shape = list(tiles[0].shape)
    shape[dim] = gap
    spacer = torch.ones(shape)
    parts: List[torch.Tensor] = []
    for tile in tiles:
        parts += [tile, spacer]
    return torch.cat(parts[:-1], dim=dim)


def _eval_kernel(conv) -> torch.Tensor:
    """The layer's kernel as evaluation uses it, on the host (training state untouched)."""
    with torch.no_grad(), eval_mode(conv):
        return conv.generate_kernel().detach().float().cpu()


def kernel_image(conv, num_pairs: int = 4, kernel: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RGB ``(3, H, W)``: kernel slices ``(out, in)`` = (0, 0), (1, 1), ... on the full grid.

    One symmetric colour scale (blue < 0 < red) for the image, scaled to its largest
    ``|value|``; grid positions the crop leaves out are grey. 3-D kernels show their
    central plane, 1-D kernels one strip per slice. ``kernel``: the layer's kernel if
    already at hand (host, as :meth:`generate_kernel` returns it).
    """
    kernel = _eval_kernel(conv) if kernel is None else kernel
    full, inside = _on_full_grid(conv, kernel)
    c_out, c_in = kernel.shape[:2]
    pairs = [(k % c_out, k % c_in) for k in range(min(num_pairs, max(c_out, c_in)))]
    vmax = max(float(kernel[o, i].abs().max()) for o, i in pairs) or 1.0
    grey = torch.tensor(_CROPPED_AWAY).view(3, 1, 1)
    mask = _plane(inside)
    tiles = []
    for o, i in pairs:
        rgb = _colour(_plane(full[o, i]), "RdBu_r", -vmax, vmax)
        if conv.dim == 1:
            rgb = rgb.repeat_interleave(8, 1)  # a strip 8 rows high
            tile_mask = mask.repeat_interleave(8, 0)
        else:
            tile_mask = mask
        tiles.append(_fit(torch.where(tile_mask, rgb, grey)))
    return _join(tiles)


def mask_image(conv) -> Optional[torch.Tensor]:
    """RGB ``(3, H, W)``: the mask on the full grid (viridis, 0 to 1), the crop's border in red.

    3-D masks show their central plane; 1-D masks a strip. None for a layer without a mask.
    """
    if conv.mask is None:
        return None
    with torch.no_grad():
        values = conv.mask(conv.full_grid())[0, 0].detach().float().cpu()
    inside = torch.zeros(conv.grid_size(), dtype=torch.bool)
    inside[conv.crop()] = True
    plane, kept = _plane(values), _plane(inside)
    if conv.dim == 1:
        plane, kept = plane.repeat_interleave(12, 0), kept.repeat_interleave(12, 0)
    rgb, kept = _fit(_colour(plane, "viridis", 0.0, 1.0)), _fit(kept[None].float())[0] > 0.5
    # Border of the kept region: kept pixels with a neighbour outside it (or on the image edge).
    padded = F.pad(kept[None, None].float(), (1, 1, 1, 1))
    interior = -F.max_pool2d(-padded, 3, stride=1)[0, 0] > 0.5
    border = kept & ~interior
    rgb[:, border] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1)
    return rgb


def put_kernel_images(model: nn.Module, storage, num_pairs: int = 4, bins: int = 64) -> int:
    """Put ``kernels/<layer>`` and ``masks/<layer>`` images and histograms into ``storage``.

    Histograms: ``kernel_values/<layer>`` (the generated kernel's values) and, over every
    layer and dim, ``mask_sigma`` / ``mask_width`` (the masks' width parameters) and
    ``mask_mean``. Returns the number of layers drawn.
    """
    convs = _fixed_convs(model)
    widths: Dict[str, List[torch.Tensor]] = {}
    for name, conv in convs:
        kernel = _eval_kernel(conv)
        storage.put_image(f"kernels/{name}", kernel_image(conv, num_pairs, kernel))
        image = mask_image(conv)
        if image is not None:
            storage.put_image(f"masks/{name}", image)
        storage.put_histogram(f"kernel_values/{name}", kernel, bins=bins)
        described = conv.mask.describe() if conv.mask is not None else {}
        for key in ("mean", "sigma", "width"):
            if key in described:
                widths.setdefault(f"mask_{key}", []).append(described[key].float().flatten())
    for key, values in widths.items():
        storage.put_histogram(key, torch.cat(values), bins=bins)
    return len(convs)

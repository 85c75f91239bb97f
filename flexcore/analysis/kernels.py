"""Kernel reports: learned mask extents and kernel sizes per continuous conv, as tables and PNGs.

    write_kernel_report(model, "output/run")          # after training (the engine's hook)
    stats = {"epoch 10": kernel_stats(m10), "final": kernel_stats(m_final)}
    plot_kernel_sizes(stats, "sizes.png")             # one line per checkpoint

Files written into ``<output_dir>/kernels/``: ``kernel_sizes.txt`` / ``.json`` (the table),
``kernel_sizes.png`` (with a size history from training: kernel size over iterations, one
curve per layer; otherwise layer on x, kernel size on y, one line per checkpoint),
``kernel_size_history.json``, ``kernels.png`` (a few ``(out, in)`` slices of every layer's
generated kernel) and ``masks.png`` (every layer's mask on its full grid, the crop drawn
as a box).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from tabulate import tabulate

from flexcore.layers import continuous_convs

__all__ = [
    "kernel_stats",
    "kernel_size_table",
    "plot_kernel_sizes",
    "plot_kernel_size_history",
    "plot_kernels",
    "plot_masks",
    "write_kernel_report",
]

logger = logging.getLogger(__name__)

_AXES = ("y", "x")  # dim names in 2-D (row 0 = height), as the original logs them


def _dim_names(dim: int) -> List[str]:
    return list(_AXES) if dim == 2 else (["t"] if dim == 1 else ["z", "y", "x"])


def _continuous_convs(model: nn.Module):
    return list(continuous_convs(model))


def _mask_extent(mask: Optional[nn.Module], dim: int) -> Dict[str, List[Optional[float]]]:
    """Per dim: the mask's mean, its width parameter and its support ``(lower, upper)`` at the threshold."""
    none = [None] * dim
    if mask is None:
        return {"mean": none, "width": none, "lower": none, "upper": none}
    with torch.no_grad():
        bounds = mask.bounds() if hasattr(mask, "bounds") else None
        mean = getattr(mask, "mean", None)
        width = getattr(mask, "sigma", getattr(mask, "width", None))
        as_list = lambda t: [float(v) for v in t.detach().abs().flatten().tolist()] if t is not None else none  # noqa: E731
        return {
            "mean": [float(v) for v in mean.detach().flatten().tolist()] if isinstance(mean, torch.Tensor) else none,
            "width": as_list(width) if isinstance(width, torch.Tensor) else none,
            "lower": [float(v) for v in bounds[:, 0].tolist()] if bounds is not None else none,
            "upper": [float(v) for v in bounds[:, 1].tolist()] if bounds is not None else none,
        }


def kernel_stats(model: nn.Module) -> List[Dict[str, Any]]:
    """One dict per continuous conv: names, grid and kernel size, the mask's extent per dim.

    Layers whose grid is not fixed yet (no forward pass ran) report ``grid_size`` None.
    """
    stats = []
    for index, (name, conv) in enumerate(_continuous_convs(model)):
        dim = conv.dim
        try:
            grid = list(conv.grid_size())
            size = list(conv.kernel_size())
        except RuntimeError:  # grid fixed by the first forward
            grid, size = None, None
        stats.append(
            {
                "index": index,
                "layer": name,
                "type": type(conv).__name__,
                "kernel_net": type(conv.kernel_net).__name__,
                "mask": type(conv.mask).__name__ if conv.mask is not None else None,
                "dim": dim,
                "channels": [conv.in_channels, conv.out_channels],
                "grid_size": grid,
                "kernel_size": size,
                **{f"mask_{k}": v for k, v in _mask_extent(conv.mask, dim).items()},
            }
        )
    return stats


def _fmt(values: Optional[Sequence[Optional[float]]], digits: int = 3) -> str:
    if values is None or all(v is None for v in values):
        return "-"
    return " x ".join("-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v)) for v in values)


def kernel_size_table(stats: List[Dict[str, Any]], tablefmt: str = "github") -> str:
    """Per layer: kernel size (cropped) of grid size, mask mean and width per dim, support."""
    rows = []
    for s in stats:
        support = None
        if s["mask_lower"][0] is not None:
            support = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(s["mask_lower"], s["mask_upper"])]
        rows.append(
            [s["layer"], s["type"], f"{s['channels'][0]}->{s['channels'][1]}", _fmt(s["kernel_size"]),
             _fmt(s["grid_size"]), _fmt(s["mask_mean"]), _fmt(s["mask_width"]),
             " x ".join(support) if support else "-"]
        )
    head = ["layer", "conv", "channels", "kernel size", "grid", "mask mean", "mask width", "mask support"]
    dims = sorted({s["dim"] for s in stats})
    note = f"Dims in order {', '.join('/'.join(_dim_names(d)) for d in dims)}." if dims else "No continuous convs."
    return note + "\n" + tabulate(rows, headers=head, tablefmt=tablefmt)


# ---------------------------------------------------------------- plots
_TICK_PT, _LABEL_PT, _TITLE_PT = 9, 10, 12  # legible at 100 dpi


def _columns(count: int, most: int) -> int:
    """Columns for ``count`` panels: the fewest empty slots, then the widest grid."""
    options = range(1, max(1, min(most, count)) + 1)
    return min(options, key=lambda c: (-(-count // c) * c - count, -c))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_kernel_sizes(stats_by_label: Dict[str, List[Dict[str, Any]]], path: str, title: Optional[str] = None) -> str:
    """Kernel size per layer, one line per checkpoint (per dim where the sizes differ).

    Args:
        stats_by_label: ``{label: kernel_stats(model)}``, e.g. one entry per checkpoint.
        path: PNG to write.
        title: figure title (default: "Kernel size per layer").
    """
    plt = _pyplot()
    first = next(iter(stats_by_label.values()), [])
    names = [s["layer"] for s in first]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2.5), 4.2))
    markers = "os^Dvx"
    for i, (label, stats) in enumerate(stats_by_label.items()):
        sizes = [s["kernel_size"] for s in stats if s["kernel_size"] is not None]
        if not sizes:
            continue
        dim = stats[0]["dim"]
        per_dim_differs = any(len(set(size)) > 1 for size in sizes)
        line_dims = range(dim) if per_dim_differs else [0]
        for d in line_dims:
            suffix = f" ({_dim_names(dim)[d]})" if per_dim_differs else ""
            ys = [s["kernel_size"][d] if s["kernel_size"] else float("nan") for s in stats]
            ax.plot(range(len(ys)), ys, marker=markers[d % len(markers)], linestyle="-" if d == 0 else "--",
                    color=f"C{i}", label=f"{label}{suffix}")
    grids = [max(s["grid_size"]) for s in first if s["grid_size"]]
    if grids:
        ax.plot(range(len(grids)), grids, color="0.5", linestyle=":", label="grid size (max)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=_TICK_PT)
    ax.set_xlabel("layer")
    ax.set_ylabel("kernel size (grid points, after cropping)")
    ax.set_title(title or "Kernel size per layer")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=_TICK_PT)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_kernel_size_history(
    history: Dict[str, List[List[int]]],
    path: str,
    last_iteration: Optional[int] = None,
    grid_sizes: Optional[Dict[str, Sequence[int]]] = None,
    title: Optional[str] = None,
) -> str:
    """Kernel size over training, one step curve per layer (and per dim where they differ).

    Args:
        history: ``{layer: [[iteration, *size], ...]}``, the first size and every change
            (``KernelSizeLogger.history``).
        path: PNG to write.
        last_iteration: where the curves end (default: the last change).
        grid_sizes: ``{layer: full grid size}``, drawn as a dotted ceiling when all agree.
        title: figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    end = max([last_iteration or 0] + [points[-1][0] for points in history.values() if points])
    dim_names = None
    # Sizes are integers and layers often agree: curves are spread slightly to stay visible.
    step = min(0.12, 0.6 / max(len(history) - 1, 1))
    for i, (layer, points) in enumerate(history.items()):
        offset = (i - (len(history) - 1) / 2) * step
        if not points:
            continue
        iters = [p[0] + 1 for p in points] + [end + 1]  # iterations done (1-based)
        sizes = [p[1:] for p in points]
        sizes.append(sizes[-1])
        dims = len(sizes[0])
        dim_names = _dim_names(dims)
        per_dim = any(len(set(size)) > 1 for size in sizes)
        for d in range(dims) if per_dim else [0]:
            suffix = f" ({dim_names[d]})" if per_dim else ""
            # Later layers thinner and on top, so that coinciding curves stay visible.
            ax.step(iters, [size[d] + offset for size in sizes], where="post", color=f"C{i % 10}",
                    linestyle="-" if d == 0 else "--", linewidth=1.8, label=f"{layer}{suffix}")
    grids = {tuple(g) for g in (grid_sizes or {}).values() if g}
    if len(grids) == 1:
        ax.axhline(max(next(iter(grids))), color="0.5", linestyle=":", label="full grid")
    ax.set_xlabel("iteration", fontsize=11)
    ax.set_ylabel("kernel size (grid points, after cropping)", fontsize=11)
    note = f"curves {step:.2g} apart where sizes agree"
    if dim_names and len(dim_names) > 1:
        note += f"; one curve for {' and '.join(dim_names)} unless marked"
    ax.text(0.0, 1.01, note, transform=ax.transAxes, fontsize=9, color="0.35", va="bottom")
    ax.tick_params(labelsize=10)
    ax.set_title(title or "Kernel size over training", fontsize=12, pad=18)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _coords(grid: torch.Tensor, d: int) -> torch.Tensor:
    """1-D coordinates of spatial dim ``d`` of a grid ``(1, D, *sizes)``."""
    index = [0] * (grid.dim() - 2)
    index[d] = slice(None)
    return grid[(0, d, *index)].detach().float().cpu()


def _extent(conv, slices) -> List[float]:
    """``imshow`` extent (left, right, bottom, top) of the last two dims of a cropped kernel,
    in grid coordinates ([-1, 1] on the full grid), rows growing downwards."""
    grid = conv.full_grid()
    ys, xs = _coords(grid, grid.dim() - 4)[slices[0]], _coords(grid, grid.dim() - 3)[slices[1]]
    full = grid.shape[-1]
    half = lambda c: float(c[1] - c[0]) / 2 if len(c) > 1 else 1.0 / max(full - 1, 1)  # noqa: E731
    return [float(xs[0]) - half(xs), float(xs[-1]) + half(xs), float(ys[-1]) + half(ys), float(ys[0]) - half(ys)]


def _central(t: torch.Tensor, keep: int) -> torch.Tensor:
    """Central slices of the leading dims until ``keep`` dims are left (3-D kernels show their middle)."""
    while t.dim() > keep:
        t = t[t.shape[0] // 2]
    return t


def plot_kernels(model: nn.Module, path: str, num_slices: int = 4, title: Optional[str] = None) -> Optional[str]:
    """Rows: continuous convs; columns: kernel slices ``(out, in)`` = (0, 0), (1, 1), ...

    2-D kernels are drawn at their place on the full [-1, 1] grid (so cropping shows), with a
    symmetric colour scale per row; 1-D kernels as taps over position.
    """
    plt = _pyplot()
    convs = _continuous_convs(model)
    if not convs:
        return None
    cols = num_slices
    fig, axes = plt.subplots(len(convs), cols, figsize=(2.5 * cols + 2.2, 2.3 * len(convs) + 0.8), squeeze=False,
                             layout="constrained")
    with torch.no_grad():
        for row, (name, conv) in enumerate(convs):
            kernel = conv.generate_kernel().detach().float().cpu()
            c_out, c_in = kernel.shape[:2]
            pairs = [(k % c_out, k % c_in) for k in range(min(cols, max(c_out, c_in)))]
            vmax = max(float(kernel[o, i].abs().max()) for o, i in pairs) or 1.0
            for col in range(cols):
                ax = axes[row][col]
                if col >= len(pairs):
                    ax.axis("off")
                    continue
                o, i = pairs[col]
                k = kernel[o, i]
                if conv.dim == 1:
                    pos = _coords(conv.full_grid(), 0)[conv.crop()[0]]
                    ax.plot(pos.numpy(), k.numpy(), lw=1, marker=".", ms=3)
                    ax.axhline(0, color="0.6", lw=0.5)
                    ax.set_xlim(-1.05, 1.05)
                    ax.set_xticks([-1, -0.5, 0, 0.5, 1])
                    if row == len(convs) - 1:
                        ax.set_xlabel("position", fontsize=_LABEL_PT)
                    ax.tick_params(labelsize=_TICK_PT)
                else:
                    slices = conv.crop()[-2:]
                    img = ax.imshow(_central(k, 2).numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                                    extent=_extent(conv, slices), interpolation="nearest")
                    ax.set_xlim(-1, 1)
                    ax.set_ylim(1, -1)
                    ax.set_xticks([-1, 0, 1])
                    ax.set_yticks([-1, 0, 1])
                    ax.tick_params(labelsize=_TICK_PT)
                ax.set_title(f"(out, in) = ({o}, {i})", fontsize=_TICK_PT)
                if col == 0:
                    size = "x".join(map(str, k.shape))
                    ax.set_ylabel(f"{name}\n{size}", fontsize=_LABEL_PT)
            if conv.dim > 1:
                bar = fig.colorbar(img, ax=list(axes[row]), shrink=0.9, aspect=12)
                bar.set_label("kernel value", fontsize=_TICK_PT)
                bar.ax.tick_params(labelsize=_TICK_PT)
    default = "Generated kernels on the [-1, 1] position grid (rows: layer, kernel size"
    default += "; x to the right, y down)" if any(c.dim > 1 for _, c in convs) else "; causal: +1 = now)"
    fig.suptitle(title or default, fontsize=_TITLE_PT)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_masks(model: nn.Module, path: str, title: Optional[str] = None, columns: int = 6) -> Optional[str]:
    """Every layer's mask on its full grid, with the threshold contour and the crop box.

    ``columns`` is the most panels per row; the grid is chosen to leave no slot empty where
    possible, and slots left over are removed.
    """
    plt = _pyplot()
    convs = [(n, c) for n, c in _continuous_convs(model) if c.mask is not None]
    if not convs:
        return None
    cols = _columns(len(convs), columns)
    rows = (len(convs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 1.2, 2.9 * rows + 0.8), squeeze=False,
                             layout="constrained")
    image = None
    with torch.no_grad():
        for index, (name, conv) in enumerate(convs):
            ax = axes[index // cols][index % cols]
            grid = conv.full_grid()
            values = conv.mask(grid)[0, 0].detach().float().cpu()
            threshold = float(getattr(conv.mask, "threshold", torch.tensor([0.1])).flatten()[0])
            size = "x".join(map(str, conv.kernel_size()))
            if conv.dim == 1:
                pos = _coords(grid, 0).numpy()
                ax.plot(pos, values.numpy(), lw=1.2)
                ax.axhline(threshold, color="C3", lw=0.8, ls="--", label=f"threshold {threshold:g}")
                crop = conv.crop()[0]
                ax.axvspan(pos[crop.start], pos[crop.stop - 1], color="C2", alpha=0.15, label="kept")
                ax.set_xlim(-1.05, 1.05)
                ax.set_ylim(0, 1.05)
                ax.set_xticks([-1, -0.5, 0, 0.5, 1])
                ax.set_xlabel("position", fontsize=_LABEL_PT)
                ax.legend(fontsize=_TICK_PT - 1, loc="upper left")
            else:
                img = _central(values, 2).numpy()
                ys, xs = _coords(grid, conv.dim - 2), _coords(grid, conv.dim - 1)
                image = ax.imshow(img, cmap="viridis", vmin=0, vmax=1,
                                  extent=_extent(conv, (slice(None), slice(None))))
                ax.contour(xs.numpy(), ys.numpy(), img, levels=[threshold], colors="w", linewidths=0.8)
                x0, x1, y0, y1 = _extent(conv, conv.crop()[-2:])
                ax.add_patch(plt.Rectangle((x0, y1), x1 - x0, y0 - y1, fill=False, ec="C3", lw=1.0))
                ax.set_xticks([-1, 0, 1])
                ax.set_yticks([-1, 0, 1])
            ax.tick_params(labelsize=_TICK_PT)
            ax.set_title(f"{name}: kernel {size}", fontsize=_TICK_PT)
        for index in range(len(convs), rows * cols):
            fig.delaxes(axes[index // cols][index % cols])
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel()[: len(convs)].tolist(), shrink=0.8, aspect=15)
        bar.set_label("mask value", fontsize=_LABEL_PT)
        bar.ax.tick_params(labelsize=_TICK_PT)
        default = "Masks on the full grid (white: threshold contour, red box: crop kept)"
    else:
        default = "Masks on the full grid (dashed: threshold, shaded: positions kept)"
    fig.suptitle(title or default, fontsize=_TITLE_PT)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_kernel_report(
    model: nn.Module,
    output_dir: str,
    label: str = "model",
    num_slices: int = 4,
    extra_stats: Optional[Dict[str, List[Dict[str, Any]]]] = None,
    size_history: Optional[Dict[str, List[List[int]]]] = None,
    last_iteration: Optional[int] = None,
) -> Dict[str, str]:
    """Write the kernel-size table, its plot, kernel grids and mask grids into ``output_dir/kernels``.

    Args:
        model: a model whose continuous convs ran at least one forward (grids fixed).
        output_dir: the run's output dir (files go to its ``kernels/`` subfolder).
        label: name of this model's line in the size plot (e.g. ``"final"``).
        num_slices: ``(out, in)`` kernel slices per layer in ``kernels.png``.
        extra_stats: more ``{label: kernel_stats(...)}`` lines for the size plot (other checkpoints).
        size_history: ``{layer: [[iteration, *size], ...]}`` from training: ``kernel_sizes.png``
            then shows the sizes over the iterations (up to ``last_iteration``), and
            ``kernel_size_history.json`` keeps the points.

    Returns:
        ``{kind: path}`` of the written files.
    """
    folder = os.path.join(output_dir, "kernels")
    os.makedirs(folder, exist_ok=True)
    stats = kernel_stats(model)
    written = {}
    table = kernel_size_table(stats)
    written["table"] = os.path.join(folder, "kernel_sizes.txt")
    with open(written["table"], "w", encoding="utf-8") as f:
        f.write(f"{label}\n{table}\n")
    all_stats = {**(extra_stats or {}), label: stats}
    written["json"] = os.path.join(folder, "kernel_sizes.json")
    with open(written["json"], "w", encoding="utf-8") as f:
        json.dump(all_stats, f, indent=2)
    if not stats:
        logger.info("Kernel report: %s has no continuous convolutions; wrote only the table.", type(model).__name__)
        return written
    was_training = model.training
    model.eval()
    try:
        sizes_png = os.path.join(folder, "kernel_sizes.png")
        if size_history:
            written["history"] = os.path.join(folder, "kernel_size_history.json")
            with open(written["history"], "w", encoding="utf-8") as f:
                json.dump(size_history, f)
            grids = {s["layer"]: s["grid_size"] for s in stats}
            written["sizes_plot"] = plot_kernel_size_history(size_history, sizes_png, last_iteration, grids)
        else:
            written["sizes_plot"] = plot_kernel_sizes(all_stats, sizes_png)
        written["kernels_plot"] = plot_kernels(model, os.path.join(folder, "kernels.png"), num_slices)
        masks = plot_masks(model, os.path.join(folder, "masks.png"))
        if masks:
            written["masks_plot"] = masks
    finally:
        model.train(was_training)
    logger.info("Kernel report written to %s:\n%s", folder, table)
    return written

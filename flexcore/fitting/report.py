"""Kernel-fitting outputs: the MSE/PSNR table (tabulate, CSV, JSON) and PNG images.

Per target ``<label>/``: ``ground_truth.png`` and ``<kernel net>.png`` (2-D: the values in
``[0, 1]`` as grey or RGB pixels, enlarged with nearest-neighbour so each sample stays a
visible square), and ``comparison.png``: ground truth next to every net's prediction with its
PSNR (2-D: images; 1-D: curves).
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from tabulate import tabulate

from flexcore.utils.file_io import atomic_open

__all__ = ["COLUMNS", "format_table", "write_table", "save_image", "save_comparison"]

COLUMNS = ("target", "kernel_net", "parameters", "mse", "psnr", "best_iteration", "iterations", "seconds")


def _fmt(key: str, value: Any) -> Any:
    if key == "mse":
        return f"{value:.3e}"
    if key == "psnr":
        return "inf" if math.isinf(value) else f"{value:.2f}"
    if key == "parameters":
        return f"{value:,}"
    return value


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The results as a GitHub-style table (PSNR in dB, higher is better)."""
    body = [[_fmt(k, row[k]) for k in COLUMNS] for row in rows]
    headers = ["target", "kernel net", "params", "MSE", "PSNR (dB)", "best it.", "its", "s"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def write_table(rows: Sequence[Dict[str, Any]], output_dir: str) -> List[str]:
    """``results.csv`` and ``results.json`` in ``output_dir`` (written whole, then renamed)."""
    csv_path = os.path.join(output_dir, "results.csv")
    json_path = os.path.join(output_dir, "results.json")
    with atomic_open(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(json_path, "w") as f:
        json.dump([{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in r.items()} for r in rows],
                  f, indent=2)
    return [csv_path, json_path]


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> ``(H, W)`` or ``(H, W, 3)`` uint8."""
    array = (values.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return array[0] if array.shape[0] == 1 else np.transpose(array[:3], (1, 2, 0))


def save_image(values: torch.Tensor, path: str, pixel: int = 8) -> str:
    """A 2-D ``(C, H, W)`` tensor as a PNG, each sample a ``pixel`` x ``pixel`` square."""
    from PIL import Image

    img = Image.fromarray(_to_uint8(values))
    img = img.resize((img.width * pixel, img.height * pixel), Image.Resampling.NEAREST)
    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")
    return path


def save_comparison(target: torch.Tensor, predictions: Dict[str, torch.Tensor], psnrs: Dict[str, float],
                    path: str, title: str = "") -> str:
    """Ground truth beside each prediction (2-D: images; 1-D: curves), titled with the PSNRs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = 1 + len(predictions)
    if target.dim() == 3:  # (C, H, W)
        fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.7), squeeze=False)
        panels = [("ground truth", target)] + list(predictions.items())
        # Grey panels share the target's value range, so low-contrast targets stay visible
        # (the per-net PNGs keep absolute values).
        low, high = _to_uint8(target).min(), _to_uint8(target).max()
        if high - low < 8:
            low, high = 0, 255
        for ax, (name, values) in zip(axes[0], panels):
            image = _to_uint8(values)
            grey = image.ndim == 2
            ax.imshow(image, cmap="gray" if grey else None, vmin=low if grey else 0, vmax=high if grey else 255,
                      interpolation="nearest")
            ax.set_title(name if name == "ground truth" else f"{name}\n{psnrs[name]:.1f} dB", fontsize=9)
            ax.axis("off")
    else:  # (C, L): first channel as curves
        fig, ax = plt.subplots(figsize=(7, 3))
        x = np.linspace(-1, 1, target.shape[-1])
        ax.plot(x, target[0].cpu().numpy(), "k-", lw=2.5, label="ground truth")
        for name, values in predictions.items():
            ax.plot(x, values[0].detach().cpu().numpy(), lw=1.2, label=f"{name} ({psnrs[name]:.1f} dB)")
        ax.legend(fontsize=8)
        ax.set_xlabel("relative position")
    if target.dim() == 3 and target.shape[0] == 1 and (low, high) != (0, 255):
        title = f"{title}; grey scale {low / 255:.2f} to {high / 255:.2f}".lstrip("; ")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path

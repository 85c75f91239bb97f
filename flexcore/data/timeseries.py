"""Shared pipeline of the time-series classification sets (SpeechCommands, CharacterTrajectories).

Irregular sampling drops ``int(L * drop_rate / 100)`` time steps per sample (all
channels together); inputs are normalised with training-split statistics that ignore the
dropped (and missing, NaN) values, those values become 0, and with ``drop_rate > 0`` an
"exists" channel (1 = observed) is appended, as in the original (its `datasets/` loaders).
Everything per sample happens lazily in ``__getitem__``, so raw 16 kHz audio stays
compact (int16, memory-mapped) in memory.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .seeds import sample_generator, stream_offset

__all__ = [
    "NORMALIZATIONS",
    "EPS",
    "dropped_steps",
    "drop_mask",
    "normalization_stats",
    "stratified_split",
    "IrregularSequenceDataset",
]

NORMALIZATIONS = ("channel", "time_step", "none")
EPS = 1e-5  # added to the std, as the original


def dropped_steps(length: int, drop_rate: float) -> int:
    """Time steps removed per sample: ``int(length * drop_rate / 100)`` (``drop_rate`` in percent)."""
    if not 0 <= drop_rate < 100:
        raise ValueError(f"drop_rate is a percentage in [0, 100), got {drop_rate}")
    return int(length * float(drop_rate) / 100.0)


def drop_mask(length: int, drop_rate: float, drop_seed: int, sample_id: int) -> torch.Tensor:
    """Boolean ``(length,)``, True at the steps sample ``sample_id`` loses; fixed per (seed, id)."""
    mask = torch.zeros(length, dtype=torch.bool)
    count = dropped_steps(length, drop_rate)
    if count:
        generator = sample_generator(stream_offset(drop_seed, "drop"), sample_id)
        # index_fill_: ~500x faster than `mask[idx] = True` (index_put) on CPU for 16k steps
        mask.index_fill_(0, torch.randperm(length, generator=generator)[:count], True)
    return mask


def _merge(a, b):
    """Chan et al.'s pairwise merge of (count, mean, M2) moments; arrays broadcast."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    safe = np.where(n > 0, n, 1)
    delta = mean_b - mean_a
    mean = mean_a + delta * n_b / safe
    m2 = m2_a + m2_b + delta**2 * n_a * n_b / safe
    return n, mean, m2


def normalization_stats(
    features: torch.Tensor,
    indices: Sequence[int],
    mode: str = "channel",
    scale: float = 1.0,
    drop_rate: float = 0.0,
    drop_seed: int = 0,
) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Mean and unbiased std of ``features[indices] * scale`` over the observed values.

    Args:
        features: ``(N, C, L)`` (any dtype; a memory map is read chunk by chunk).
        indices: the training samples (rows of ``features``; also their drop-mask ids).
        mode: ``"channel"`` (one value per channel, over samples and time: what the
            paper intends), ``"time_step"`` (one per time index, over samples and
            channels: the original code's quirk) or ``"none"``.

    Returns:
        ``(mean, std)`` shaped ``(C, 1)`` or ``(1, L)`` to broadcast over a sample, or
        None for ``"none"``.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "none":
        return None
    _, channels, length = features.shape
    axis_len = channels if mode == "channel" else length
    total = (np.zeros(axis_len), np.zeros(axis_len), np.zeros(axis_len))
    indices = np.asarray(indices, dtype=np.int64)
    chunk = max(1, 2_000_000 // (channels * length))  # ~16 MB of float64 per pass (raw audio: 125 clips)
    for start in range(0, len(indices), chunk):
        ids = indices[start : start + chunk]
        x = features[torch.from_numpy(ids)].double().numpy() * scale  # (B, C, L)
        weight = np.isfinite(x)  # missing values ('?' in .ts files) are not observed either
        if drop_rate:
            dropped = torch.stack([drop_mask(length, drop_rate, drop_seed, int(i)) for i in ids]).numpy()
            weight &= ~dropped[:, None, :]
        reduce = (0, 2) if mode == "channel" else (0, 1)
        n = weight.sum(axis=reduce).astype(np.float64)
        mean = np.where(weight, x, 0).sum(axis=reduce) / np.where(n > 0, n, 1)
        centred = x - (mean[None, :, None] if mode == "channel" else mean[None, None, :])
        m2 = np.where(weight, centred**2, 0).sum(axis=reduce)
        total = _merge(total, (n, mean, m2))
    n, mean, m2 = total
    if (n < 2).any():
        raise ValueError(
            f"Too few observed training values to normalise per {mode} (need >= 2 each); "
            f"lower drop_rate or use normalize='none'."
        )
    std = np.sqrt(m2 / (n - 1))
    shape = (channels, 1) if mode == "channel" else (1, length)
    return torch.from_numpy(mean).float().reshape(shape), torch.from_numpy(std).float().reshape(shape)


def stratified_split(labels: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The original's 70/15/15 split: two stratified ``train_test_split`` calls (random states 0, 1).

    Returns sorted ``(train, val, test)`` row indices; identical to the original's split
    when the samples come in the original's order.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    try:
        train, rest, _, rest_labels = train_test_split(
            rows, labels, train_size=0.7, random_state=0, shuffle=True, stratify=labels
        )
        val, test = train_test_split(rest, train_size=0.5, random_state=1, shuffle=True, stratify=rest_labels)
    except ValueError as exc:  # sklearn: too few samples per class for a stratified split
        raise ValueError(
            f"Cannot make the original stratified 70/15/15 split of {len(labels)} samples: {exc}"
        ) from exc
    return np.sort(train), np.sort(val), np.sort(test)


class IrregularSequenceDataset(Dataset):
    """Rows of a ``(N, C, L)`` feature tensor with drop, normalisation and mask channel applied.

    Args:
        features: all samples ``(N, C, L)``, any dtype (e.g. int16 audio), possibly mmapped.
        labels: ``(N,)`` int64 class of every row.
        indices: the rows this split serves; also the ids that seed the drop masks, so a
            sample loses the same steps whichever split it lands in.
        stats: ``(mean, std)`` from :func:`normalization_stats`, or None.
        scale: multiplies the raw values first (``2**-15`` for int16 audio).
        drop_rate, drop_seed: irregular sampling (percent of steps dropped).
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        indices: Sequence[int],
        stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        scale: float = 1.0,
        drop_rate: float = 0.0,
        drop_seed: int = 0,
    ):
        self.features = features
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self.stats = stats
        self.scale = scale
        self.drop_rate = drop_rate
        self.drop_seed = drop_seed
        dropped_steps(features.shape[-1], drop_rate)  # validates the rate early

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def targets(self) -> torch.Tensor:
        """Labels of this split's samples, ``(len(self),)`` int64."""
        return self.labels[torch.from_numpy(self.indices)]

    def sample_id(self, index: int) -> int:
        """Row of ``features`` (the drop-mask id) behind item ``index``."""
        return int(self.indices[index])

    def __getitem__(self, index: int):
        row = self.sample_id(index)
        x = self.features[row].float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.stats is not None:
            mean, std = self.stats
            x = (x - mean) / (std + EPS)
        if self.drop_rate:
            dropped = drop_mask(x.shape[-1], self.drop_rate, self.drop_seed, row)
            exists = ~dropped & ~torch.isnan(x[0])  # as the original: channel 0's NaN pattern
            x = torch.cat([torch.nan_to_num(x.masked_fill_(dropped, 0.0), nan=0.0), exists.float().unsqueeze(0)])
        else:
            x = torch.nan_to_num(x, nan=0.0)
        return x, int(self.labels[row])

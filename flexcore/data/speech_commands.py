"""Speech Commands v0.02, ten-word task: raw 16 kHz audio or MFCC, optional irregular sampling.

Layout under the root: the unpacked tarball in ``SpeechCommands/`` -- one folder per word
with 16 kHz mono 16-bit PCM ``.wav`` files, plus ``validation_list.txt`` and
``testing_list.txt`` (the standard split). Features (raw int16 or MFCC) are computed once
and cached in ``SpeechCommands/processed/`` keyed by their parameters; the computation
shows progress and, if interrupted, resumes from the chunks it had finished.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from flexcore.registry import DATASETS

from .download import download_files
from .audio import mfcc as compute_mfcc
from .audio import read_wav, wav_length
from .base import SPLITS, CorruptDatasetError, DatasetMetadata, MissingDatasetError, dataset_dir, default_root
from .cache import CACHE_FORMAT, build_in_chunks, cache_key_hash, chunk_dir, fingerprint_files, load_or_build
from .images import check_choice
from .timeseries import NORMALIZATIONS, IrregularSequenceDataset, normalization_stats, stratified_split

__all__ = ["SpeechCommands", "CLASSES", "scan_clips", "read_split_list"]

logger = logging.getLogger(__name__)

CLASSES = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # the original's label order
SAMPLE_RATE = 16000
CLIP_LENGTH = 16000
LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}
URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
# SHA-256 of the tarball as published with torchaudio's SPEECHCOMMANDS dataset.
URL_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
SOURCE = (
    f"{URL} (Speech Commands v0.02, 2.3 GB; unpack it into <root>/SpeechCommands, or let it "
    f"download: --gin \"SpeechCommands.download = True\")"
)
SPLIT_SCHEMES = ("standard", "original")
# Sizes of the original's stratified 70/15/15 split of the 34,975 full-length clips.
ORIGINAL_SPLIT_SIZES = {"train": 24_482, "val": 5_246, "test": 5_247}
FORMAT_VERSION = 1
CHUNK_CLIPS = 1024  # clips per saved chunk while features are computed: the resume granularity


def scan_clips(base: str) -> List[Tuple[int, str, int]]:
    """``(label, "word/file.wav", size in bytes)`` of every clip of the ten words, in label then name order."""
    clips = []
    for label, word in enumerate(CLASSES):
        with os.scandir(os.path.join(base, word)) as entries:
            found = sorted((e.name, e.stat().st_size) for e in entries if e.name.endswith(".wav") and e.is_file())
        clips.extend((label, f"{word}/{name}", size) for name, size in found)
    return clips


def read_split_list(path: str) -> set:
    """Entries (``word/file.wav``) of a standard split list; CorruptDatasetError on malformed lines."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise CorruptDatasetError(f"{path}: not a text file of 'word/file.wav' lines ({exc}).") from exc
    entries = set()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if not line.endswith(".wav") or line.count("/") != 1:
            raise CorruptDatasetError(f"{path}, line {number}: expected 'word/file.wav', found {line[:80]!r}.")
        entries.add(line)
    return entries


@DATASETS.register()
class SpeechCommands(IrregularSequenceDataset):
    """Speech Commands v0.02 restricted to the paper's ten words; 16 kHz clips of one second.

    Args:
        root: dataset root (holds ``SpeechCommands/``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        mfcc: MFCC features ``(n_mfcc, 1 + 16000 // (n_fft // 2))`` instead of raw audio ``(1, 16000)``.
        n_mfcc, n_mels, n_fft: MFCC parameters (the original: 20, 64, 200; log-mels, hop ``n_fft // 2``).
        drop_rate: percent of time steps dropped per sample (irregular sampling; adds a mask channel).
        drop_seed: seed of the drop pattern (the original's generator seed by default).
        normalize: ``"channel"`` (train statistics per channel, default), ``"time_step"``
            (per time index over channels: the original code's quirk) or ``"none"``.
        split_scheme: ``"standard"`` (``validation_list.txt`` / ``testing_list.txt``, train =
            the rest) or ``"original"`` (the original's stratified 70/15/15 split).
        pad_short: zero-pad clips shorter than one second instead of skipping them.
        cache_dir: where features are cached (default ``<root>/SpeechCommands/processed``).
        download: fetch and unpack the tarball into the root if the files are missing.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        mfcc: bool = False,
        n_mfcc: int = 20,
        n_mels: int = 64,
        n_fft: int = 200,
        drop_rate: float = 0.0,
        drop_seed: int = 56789,
        normalize: str = "channel",
        split_scheme: str = "standard",
        pad_short: bool = False,
        cache_dir: Optional[str] = None,
        download: bool = False,
    ):
        check_choice("SpeechCommands", "split", split, SPLITS)
        metadata = self.describe(mfcc=mfcc, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, drop_rate=drop_rate,
                                 normalize=normalize, split_scheme=split_scheme, pad_short=pad_short)
        base = self._locate(root, download)
        clips = scan_clips(base)
        key = {
            "dataset": "SpeechCommands", "version": FORMAT_VERSION, "features": "mfcc" if mfcc else "raw",
            "length": CLIP_LENGTH, "pad_short": pad_short,
            **({"n_mfcc": n_mfcc, "n_mels": n_mels, "n_fft": n_fft, "log_mels": True} if mfcc else {}),
        }
        cache_dir = cache_dir or os.path.join(base, "processed")
        self.cache_path = os.path.join(cache_dir, f"{key['features']}-{cache_key_hash(key)}.pt")
        fingerprint = fingerprint_files((rel, size) for _, rel, size in clips)
        data, self.cache_built = load_or_build(
            self.cache_path, key, fingerprint,
            lambda: self._build(base, clips, key, chunk_dir(self.cache_path), fingerprint), mmap=True,
            what="SpeechCommands",
        )
        files: List[str] = list(data["files"])
        labels = data["labels"]
        splits = self._split(base, files, labels.numpy(), split_scheme)

        stats = None
        if normalize != "none":
            stats_key = {"features": cache_key_hash(key), "normalize": normalize, "drop_rate": float(drop_rate),
                         "drop_seed": drop_seed, "split_scheme": split_scheme}
            stats_print = fingerprint + ":" + cache_key_hash({"train": splits["train"].tolist()})
            stats_data, _ = load_or_build(
                os.path.join(cache_dir, f"stats-{cache_key_hash(stats_key)}.pt"), stats_key, stats_print,
                lambda: dict(zip(("mean", "std"), normalization_stats(
                    data["features"], splits["train"], normalize, self._scale(mfcc), drop_rate, drop_seed))),
                what="SpeechCommands statistics",
            )
            stats = (stats_data["mean"], stats_data["std"])
        super().__init__(data["features"], labels, splits[split], stats, self._scale(mfcc), drop_rate, drop_seed)
        self.split = split
        self.files = files
        self.metadata = metadata

    @staticmethod
    def _scale(mfcc: bool) -> float:
        return 1.0 if mfcc else 2.0**-15  # int16 PCM -> [-1, 1), as the original

    @classmethod
    def describe(
        cls,
        mfcc: bool = False,
        n_mfcc: int = 20,
        n_mels: int = 64,
        n_fft: int = 200,
        drop_rate: float = 0.0,
        normalize: str = "channel",
        split_scheme: str = "standard",
        pad_short: bool = False,
        **_ignored,
    ) -> DatasetMetadata:
        """Metadata without reading files.

        ``split_sizes`` are the published data's: given for ``split_scheme="original"``; the
        standard lists' sizes depend on which clips are full length, so they are left empty
        (``len(dataset)`` counts them).
        """
        check_choice("SpeechCommands", "normalize", normalize, NORMALIZATIONS)
        check_choice("SpeechCommands", "split_scheme", split_scheme, SPLIT_SCHEMES)
        if not 0 <= drop_rate < 100:
            raise ValueError(f"SpeechCommands: drop_rate is a percentage in [0, 100), got {drop_rate}")
        if mfcc and (n_fft < 2 or n_mfcc > n_mels):
            raise ValueError(
                f"SpeechCommands: need n_fft >= 2 and n_mfcc <= n_mels, got {n_fft}, {n_mfcc}, {n_mels}"
            )
        length = 1 + CLIP_LENGTH // (n_fft // 2) if mfcc else CLIP_LENGTH
        sizes = ORIGINAL_SPLIT_SIZES if split_scheme == "original" and not pad_short else {}
        return DatasetMetadata(
            name="SpeechCommands",
            in_channels=(n_mfcc if mfcc else 1) + (1 if drop_rate > 0 else 0),
            num_classes=len(CLASSES),
            shape=(length,),
            split_sizes=dict(sizes),
            extras={"classes": CLASSES, "sample_rate": SAMPLE_RATE, "features": "mfcc" if mfcc else "raw"},
        )

    @staticmethod
    def _locate(root: Optional[str], download: bool) -> str:
        expected = [*CLASSES, *LISTS.values()]
        try:
            return dataset_dir(root, "SpeechCommands", "SpeechCommands", expected, SOURCE)
        except MissingDatasetError:
            if not download:
                raise
        base = os.path.join(default_root(root), "SpeechCommands")
        download_files("SpeechCommands", ((URL, os.path.basename(URL), URL_SHA256),), base)
        return dataset_dir(root, "SpeechCommands", "SpeechCommands", expected, SOURCE)

    @staticmethod
    def _build(base: str, clips: Sequence[Tuple[int, str, int]], key: Dict, chunks: str, fingerprint: str) -> Dict:
        """Read every clip (two passes: header lengths, then samples) and compute the features.

        Features are computed ``CHUNK_CLIPS`` clips at a time, each chunk saved in ``chunks``
        as it finishes, so an interrupted build resumes where it stopped.
        """
        kept = []
        for label, rel, _ in clips:
            length = wav_length(os.path.join(base, rel), SAMPLE_RATE)
            if length == CLIP_LENGTH or (key["pad_short"] and length < CLIP_LENGTH):
                kept.append((label, rel))
        logger.info("SpeechCommands: %d of %d clips are %s; computing %s features.", len(kept), len(clips),
                    "at most one second" if key["pad_short"] else "exactly one second", key["features"])
        if not kept:
            raise CorruptDatasetError(
                f"{base}: none of the {len(clips)} clips has {CLIP_LENGTH} samples at {SAMPLE_RATE} Hz."
            )

        def features_of(start: int, stop: int) -> Dict[str, torch.Tensor]:
            batch = np.zeros((stop - start, CLIP_LENGTH), dtype=np.int16)
            for row, (_, rel) in enumerate(kept[start:stop]):
                samples = read_wav(os.path.join(base, rel), SAMPLE_RATE)[0]
                batch[row, : len(samples)] = samples  # shorter clips (pad_short) end in zeros
            if key["features"] == "mfcc":
                audio = torch.from_numpy(batch).float() / 2**15
                return {"features": compute_mfcc(audio, SAMPLE_RATE, key["n_mfcc"], key["n_fft"], key["n_mels"],
                                                 log_mels=True)}
            return {"features": torch.from_numpy(batch).unsqueeze(1)}

        record = {"format": CACHE_FORMAT, "key": key, "fingerprint": fingerprint, "clips": len(kept)}
        data = build_in_chunks(chunks, record, len(kept), CHUNK_CLIPS, features_of,
                               what=f"SpeechCommands {key['features']}", unit="clips")
        data["labels"] = torch.tensor([label for label, _ in kept], dtype=torch.int64)
        data["files"] = [rel for _, rel in kept]
        return data

    @staticmethod
    def _split(base: str, files: Sequence[str], labels: np.ndarray, scheme: str) -> Dict[str, np.ndarray]:
        if scheme == "original":
            train, val, test = stratified_split(labels)
            return {"train": train, "val": val, "test": test}
        members = {part: read_split_list(os.path.join(base, name)) for part, name in LISTS.items()}
        both = members["val"] & members["test"]
        if both:
            raise CorruptDatasetError(
                f"{os.path.join(base, LISTS['val'])} and {LISTS['test']} both list {sorted(both)[0]} "
                f"(and {len(both) - 1} more); the published lists are disjoint: re-extract them."
            )
        part = np.array(
            ["val" if f in members["val"] else "test" if f in members["test"] else "train" for f in files]
        )
        return {s: np.flatnonzero(part == s) for s in SPLITS}

    def __repr__(self) -> str:
        meta = self.metadata
        return (f"SpeechCommands(split={self.split!r}, samples={len(self)}, "
                f"input=({meta.in_channels}, {meta.shape[0]}), {meta.extras['features']})")

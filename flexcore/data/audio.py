"""Audio input and features in plain torch: PCM wav reading, spectrograms, mel filters, MFCC.

The features reproduce torchaudio's ``Spectrogram`` / ``MelSpectrogram`` / ``MFCC`` with
their defaults (periodic Hann window, ``center=True`` with reflect padding, power 2, HTK
mel scale without filter normalisation, orthonormal DCT-II), which the original
SpeechCommands pipeline used; torchaudio itself has no build for flexcore's torch.
"""
from __future__ import annotations

import math
import wave
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .base import CorruptDatasetError

__all__ = [
    "read_wav",
    "wav_length",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "dct_matrix",
    "spectrogram",
    "mel_spectrogram",
    "mfcc",
    "MFCC",
]


def _open_pcm16(path: str, sample_rate: Optional[int]) -> "wave.Wave_read":
    try:
        wav = wave.open(path, "rb")
    except (wave.Error, EOFError) as exc:
        raise CorruptDatasetError(
            f"{path}: not a readable RIFF/WAVE PCM file ({exc}); re-extract it from the archive."
        ) from exc
    channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
    if channels != 1 or width != 2:
        wav.close()
        raise CorruptDatasetError(
            f"{path}: expected mono 16-bit PCM, found {channels} channel(s) of {8 * width}-bit samples."
        )
    if sample_rate is not None and rate != sample_rate:
        wav.close()
        raise CorruptDatasetError(f"{path}: expected a {sample_rate} Hz recording, found {rate} Hz.")
    return wav


def wav_length(path: str, sample_rate: Optional[int] = None) -> int:
    """Samples a mono 16-bit PCM wav file announces in its header (the data is not read)."""
    with _open_pcm16(path, sample_rate) as wav:
        return wav.getnframes()


def read_wav(path: str, sample_rate: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """Samples of a mono 16-bit PCM wav file as int16, with its sample rate.

    Args:
        path: the ``.wav`` file.
        sample_rate: if given, the rate the file must have.

    Raises:
        CorruptDatasetError: not a RIFF/WAVE file, not mono 16-bit PCM, another sample
            rate, or fewer sample bytes than the header announces (a truncated file).
    """
    with _open_pcm16(path, sample_rate) as wav:
        rate, frames = wav.getframerate(), wav.getnframes()
        try:
            data = wav.readframes(frames)
        except (wave.Error, EOFError) as exc:
            raise CorruptDatasetError(
                f"{path}: unreadable sample data ({exc}); re-extract it from the archive."
            ) from exc
    if len(data) != 2 * frames:
        raise CorruptDatasetError(
            f"{path}: truncated: the header announces {frames} samples but the file holds "
            f"{len(data) // 2}; re-extract it from the archive."
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: Optional[float] = None
) -> torch.Tensor:
    """Triangular HTK mel filters without area normalisation, ``(n_freqs, n_mels)``.

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``,
    the ``n_mels + 2`` points being equally spaced in mel between ``f_min`` and ``f_max``
    (default ``sample_rate // 2``); the STFT bins sit at ``linspace(0, sample_rate // 2, n_freqs)``.
    """
    f_max = float(sample_rate // 2) if f_max is None else f_max
    bins = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_min, mel_max = (float(hz_to_mel(torch.tensor(f))) for f in (f_min, f_max))
    mel_points = torch.linspace(mel_min, mel_max, n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]  # (n_mels + 1,)
    offsets = hz_points.unsqueeze(0) - bins.unsqueeze(1)  # (n_freqs, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II basis, ``(n_mels, n_mfcc)``: features ``@`` it give cepstra."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64).unsqueeze(1)
    basis = torch.cos(math.pi / n_mels * (n + 0.5) * k)  # (n_mfcc, n_mels)
    basis[0] *= 1.0 / math.sqrt(2.0)
    basis *= math.sqrt(2.0 / n_mels)
    return basis.t().float()


def spectrogram(
    waveform: torch.Tensor, n_fft: int = 400, hop_length: Optional[int] = None, power: float = 2.0
) -> torch.Tensor:
    """Power spectrogram, ``(..., time)`` -> ``(..., n_fft // 2 + 1, 1 + time // hop_length)``.

    Periodic Hann window of length ``n_fft``, frames centred (input reflect-padded by
    ``n_fft // 2`` on both sides), hop ``n_fft // 2`` by default, ``|STFT| ** power``.
    """
    hop_length = n_fft // 2 if hop_length is None else hop_length
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    window = torch.hann_window(n_fft, periodic=True, dtype=flat.dtype, device=flat.device)
    stft = torch.stft(
        flat, n_fft, hop_length=hop_length, win_length=n_fft, window=window, center=True,
        pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    spec = stft.abs() if power == 1.0 else stft.abs().pow(power)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def mel_spectrogram(
    waveform: torch.Tensor, sample_rate: int = 16000, n_fft: int = 400, n_mels: int = 128,
    hop_length: Optional[int] = None, f_min: float = 0.0, f_max: Optional[float] = None,
) -> torch.Tensor:
    """Mel power spectrogram, ``(..., time)`` -> ``(..., n_mels, frames)``."""
    spec = spectrogram(waveform, n_fft=n_fft, hop_length=hop_length)
    filters = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max).to(spec)
    return torch.matmul(spec.transpose(-1, -2), filters).transpose(-1, -2)


def mfcc(
    waveform: torch.Tensor, sample_rate: int = 16000, n_mfcc: int = 40, n_fft: int = 400, n_mels: int = 128,
    hop_length: Optional[int] = None, log_mels: bool = False, top_db: float = 80.0,
) -> torch.Tensor:
    """Mel-frequency cepstral coefficients, ``(..., time)`` -> ``(..., n_mfcc, frames)``.

    Defaults are torchaudio's ``MFCC`` (``melkwargs`` given as plain arguments).
    ``log_mels=True`` takes ``log(mel + 1e-6)``; otherwise decibels
    ``10 * log10(max(mel, 1e-10))`` clipped to ``top_db`` below each clip's maximum
    (torchaudio clips against the maximum over a whole batch).
    """
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels})")
    mel = mel_spectrogram(waveform, sample_rate, n_fft, n_mels, hop_length)
    if log_mels:
        mel = torch.log(mel + 1e-6)
    else:
        mel = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        peak = mel.amax(dim=(-2, -1), keepdim=True)
        mel = torch.maximum(mel, peak - top_db)
    basis = dct_matrix(n_mfcc, n_mels).to(mel)
    return torch.matmul(mel.transpose(-1, -2), basis).transpose(-1, -2)


class MFCC(nn.Module):
    """:func:`mfcc` as a module (e.g. to compute features on the GPU inside a model)."""

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, n_fft: int = 400, n_mels: int = 128,
                 hop_length: Optional[int] = None, log_mels: bool = False, top_db: float = 80.0):
        super().__init__()
        self.kwargs = dict(sample_rate=sample_rate, n_mfcc=n_mfcc, n_fft=n_fft, n_mels=n_mels,
                           hop_length=hop_length, log_mels=log_mels, top_db=top_db)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return mfcc(waveform, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())

"""Independent float64 numpy MFCC, written from the formulas (not from flexcore's code).

Same conventions as torchaudio's defaults: periodic Hann window, centred frames with reflect
padding, power 2, HTK mel triangles without normalisation, log(mel + 1e-6), orthonormal DCT-II.
"""
import math

import numpy as np


def np_power_spectrogram(x, n_fft, hop):
    pad = n_fft // 2
    padded = np.pad(x, (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = 1 + (len(padded) - n_fft) // hop
    out = np.empty((n_fft // 2 + 1, frames))
    for t in range(frames):
        seg = padded[t * hop : t * hop + n_fft] * window
        out[:, t] = np.abs(np.fft.rfft(seg)) ** 2
    return out


def np_mel_filters(n_freqs, n_mels, sr):
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    edges = hz(np.linspace(mel(0.0), mel(sr / 2), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_freqs)
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        for i, f in enumerate(freqs):
            if lo <= f <= centre:
                fb[i, m] = (f - lo) / (centre - lo)
            elif centre < f <= hi:
                fb[i, m] = (hi - f) / (hi - centre)
    return fb


def np_mfcc(x, sr=16000, n_mfcc=20, n_fft=200, n_mels=64):
    spec = np_power_spectrogram(x.astype(np.float64), n_fft, n_fft // 2)
    mel = np_mel_filters(n_fft // 2 + 1, n_mels, sr).T @ spec
    logmel = np.log(mel + 1e-6)
    out = np.zeros((n_mfcc, logmel.shape[1]))
    for k in range(n_mfcc):
        scale = math.sqrt(1.0 / n_mels) if k == 0 else math.sqrt(2.0 / n_mels)
        basis = np.cos(np.pi / n_mels * (np.arange(n_mels) + 0.5) * k)
        out[k] = scale * basis @ logmel
    return out

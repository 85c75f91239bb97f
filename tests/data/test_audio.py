"""Audio features against an independent float64 numpy implementation of the formulas."""
import io
import math
import wave

import numpy as np
import pytest
import torch

from flexcore.data import CorruptDatasetError
from flexcore.data.audio import MFCC, mel_filterbank, mel_spectrogram, mfcc, read_wav, spectrogram

from mfcc_reference import np_mel_filters, np_mfcc



def test_mfcc_matches_numpy_reference():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clips = np.stack([
        0.3 * rng.standard_normal(16000),
        0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000),
        0.2 * np.sin(2 * np.pi * 3000 * t * (1 + t)) + 0.1 * rng.standard_normal(16000),
    ]).astype(np.float32)
    got = mfcc(torch.from_numpy(clips), sample_rate=16000, n_mfcc=20, n_fft=200, n_mels=64, log_mels=True)
    assert got.shape == (3, 20, 161) and got.dtype == torch.float32
    for clip, feats in zip(clips, got):
        ref = np_mfcc(clip)
        err = np.abs(feats.double().numpy() - ref).max() / np.abs(ref).max()
        assert err < 1e-4, err


def test_filterbank_matches_numpy_and_is_unnormalised():
    fb = mel_filterbank(101, 64, 16000)
    assert fb.shape == (101, 64)
    np.testing.assert_allclose(fb.double().numpy(), np_mel_filters(101, 64, 16000), atol=2e-5)
    assert float(fb.max()) <= 1.0 + 1e-6  # triangles peak at most 1: no area normalisation


def test_pure_tone_lands_in_its_mel_band():
    sr, f0 = 16000, 1000.0
    tone = torch.sin(2 * math.pi * f0 * torch.arange(sr) / sr)
    mel = mel_spectrogram(tone, sample_rate=sr, n_fft=200, n_mels=64)  # (64, 161)
    assert mel.shape == (64, 161)
    band = int(mel[:, 80].argmax())
    # centre frequencies of the 64 triangles; the tone's band is the one centred nearest 1 kHz
    mels = np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 66)[1:-1]
    centres = 700 * (10 ** (mels / 2595) - 1)
    assert band in np.argsort(np.abs(centres - f0))[:2]
    # Parseval-style check on the power spectrogram: a unit sine, Hann window, power sum over
    # the one-sided bins = N * sum(w^2) / 4 * 2 (two half-power bins mirrored into one side)
    spec = spectrogram(tone, n_fft=200)
    window = torch.hann_window(200, periodic=True)
    expected = 200 * float((window**2).sum()) / 4
    assert abs(float(spec[:, 80].sum()) - expected) / expected < 0.02


def test_log_mels_false_is_decibels_clipped_per_clip():
    x = torch.randn(2, 4000) * torch.tensor([[1.0], [1e-3]])
    out = mfcc(x, n_mfcc=13, n_fft=200, n_mels=40, log_mels=False)
    assert out.shape == (2, 13, 41) and torch.isfinite(out).all()
    # each clip is clipped against its own peak, so a quiet clip is not floored by a loud one
    alone = mfcc(x[1:], n_mfcc=13, n_fft=200, n_mels=40, log_mels=False)
    torch.testing.assert_close(out[1:], alone)
    assert "n_mfcc=13" in repr(MFCC(n_mfcc=13))


def _wav_bytes(samples, rate=16000, channels=1, width=2):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buf.getvalue()


def test_read_wav_roundtrip_and_errors(tmp_path):
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    good = tmp_path / "good.wav"
    good.write_bytes(_wav_bytes(samples))
    data, rate = read_wav(str(good), sample_rate=16000)
    assert rate == 16000 and data.dtype == np.int16 and np.array_equal(data, samples)

    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(CorruptDatasetError, match="truncated.wav.*truncated"):
        read_wav(str(truncated))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file at all")
    with pytest.raises(CorruptDatasetError, match="garbage.wav"):
        read_wav(str(garbage))
    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(_wav_bytes(np.zeros(8), channels=2))
    with pytest.raises(CorruptDatasetError, match="mono 16-bit"):
        read_wav(str(stereo))
    slow = tmp_path / "slow.wav"
    slow.write_bytes(_wav_bytes(np.zeros(8), rate=8000))
    with pytest.raises(CorruptDatasetError, match="16000 Hz"):
        read_wav(str(slow), sample_rate=16000)

"""SpeechCommands on a tiny copy of the real layout: RIFF/WAVE files in word folders + split lists."""
import hashlib
import os
import tarfile
import wave

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flexcore.data import CorruptDatasetError, MissingDatasetError, build_dataset, describe_dataset
from flexcore.data import speech_commands
from flexcore.data.speech_commands import CLASSES

from mfcc_reference import np_mfcc

WORDS = CLASSES + ("bed",)  # an eleventh word the ten-class task must ignore


def write_wav(path, samples, rate=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def make_speech_commands(root, per_word=4, seed=0):
    """Clip i of each word: speaker i; clip 1 listed for validation, clip 2 for testing, the last
    clip is short (0.75 s). Also the archive's `_background_noise_` folder and README."""
    base = root / "SpeechCommands"
    rng = np.random.default_rng(seed)
    val, test = [], []
    for word in WORDS:
        (base / word).mkdir(parents=True)
        for i in range(per_word):
            rel = f"{word}/spk{i:02d}_nohash_0.wav"
            length = 12000 if i == per_word - 1 else 16000
            write_wav(base / rel, rng.normal(0, 2000 + 500 * i, length).clip(-32768, 32767))
            (val if i == 1 else test if i == 2 else []).append(rel)
    (base / "_background_noise_").mkdir()
    write_wav(base / "_background_noise_" / "white_noise.wav", np.zeros(100))
    (base / "README.md").write_text("Speech Commands v0.02\n")
    (base / "validation_list.txt").write_text("\n".join(val) + "\n")
    (base / "testing_list.txt").write_text("\n".join(test) + "\n")
    return base


def read_int16(path):
    with wave.open(str(path), "rb") as f:
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")


@pytest.fixture
def root(tmp_path):
    make_speech_commands(tmp_path)
    return tmp_path


def load(root, split="train", **kw):
    return build_dataset("SpeechCommands", split, root=str(root), **kw)


def test_classes_splits_and_lengths(root):
    splits = {s: load(root, s) for s in ("train", "val", "test")}
    base = root / "SpeechCommands"
    val_list = set((base / "validation_list.txt").read_text().split())
    test_list = set((base / "testing_list.txt").read_text().split())
    seen = set()
    for name, ds in splits.items():
        files = [ds.files[r] for r in ds.indices]
        seen.update(files)
        for rel in files:
            assert (rel in val_list) == (name == "val") and (rel in test_list) == (name == "test")
        for i, rel in enumerate(files):
            x, y = ds[i]
            assert x.shape == (1, 16000) and x.dtype == torch.float32
            assert CLASSES[y] == rel.split("/")[0]
    # ten words only, full-length clips only (the short speaker-3 clips are skipped)
    assert len(seen) == 30 and not any(f.startswith("bed/") or "spk03" in f for f in seen)
    assert {s: len(d) for s, d in splits.items()} == {"train": 10, "val": 10, "test": 10}
    meta = splits["train"].metadata
    assert (meta.in_channels, meta.num_classes, meta.shape, meta.dim) == (1, 10, (16000,), 1)
    assert meta.extras["classes"] == ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    assert meta.split_sizes == {}  # the standard lists' sizes are not known without the files
    assert describe_dataset("SpeechCommands", root="/elsewhere") == meta
    assert torch.equal(splits["val"].targets, torch.tensor([splits["val"][i][1] for i in range(10)]))


def test_raw_values_and_channel_normalisation(root):
    raw = load(root, normalize="none")
    base = root / "SpeechCommands"
    for i in range(len(raw)):
        expected = read_int16(base / raw.files[raw.sample_id(i)]) / 2**15
        assert torch.equal(raw[i][0][0], torch.from_numpy(expected).float())
    train = np.stack([read_int16(base / raw.files[r]) / 2**15 for r in raw.indices])
    mean, std = train.mean(), train.std(ddof=1)
    test = load(root, "test")  # normalised with the *training* statistics
    x, _ = test[0]
    clip = read_int16(base / test.files[test.sample_id(0)]) / 2**15
    np.testing.assert_allclose(x[0].numpy(), (clip - mean) / (std + 1e-5), rtol=1e-4, atol=1e-5)


def test_mfcc_matches_numpy_reference_and_time_step_quirk(root):
    ds = load(root, mfcc=True, normalize="none")
    assert ds.metadata.in_channels == 20 and ds.metadata.shape == (161,)
    base = root / "SpeechCommands"
    x, _ = ds[3]
    ref = np_mfcc(read_int16(base / ds.files[ds.sample_id(3)]) / 2**15)
    assert np.abs(x.double().numpy() - ref).max() <= 1e-4 * np.abs(ref).max()
    # original quirk: one mean/std per time step, pooled over samples and channels
    feats = torch.stack([ds[i][0] for i in range(len(ds))]).double().numpy()  # (N, 20, 161)
    mean = feats.mean(axis=(0, 1))
    std = feats.transpose(2, 0, 1).reshape(161, -1).std(axis=1, ddof=1)
    quirk = load(root, "val", mfcc=True, normalize="time_step")
    plain = load(root, "val", mfcc=True, normalize="none")
    np.testing.assert_allclose(quirk[0][0].numpy(), (plain[0][0].numpy() - mean) / (std + 1e-5), rtol=1e-4, atol=1e-4)


def test_drop_rate_nan_handling_and_mask_channel(root):
    ds = load(root, mfcc=True, drop_rate=30)
    plain = load(root, mfcc=True, normalize="none")
    assert ds.metadata.in_channels == 21
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    masks = xs[:, -1]
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert (masks.sum(1) == 161 - int(161 * 0.3)).all()  # int(L * rate / 100) steps dropped
    assert (xs[:, :-1][masks.unsqueeze(1).expand(-1, 20, -1) == 0] == 0).all()  # dropped -> 0 in all channels
    assert not torch.equal(masks[0], masks[1])
    # statistics ignore dropped values: recompute from the observed raw features
    raw = torch.stack([plain[i][0] for i in range(len(plain))]).double()
    observed = masks.bool().unsqueeze(1).expand_as(raw)
    for c in (0, 7):
        values = raw[:, c][observed[:, c]].numpy()
        expected = (raw[:, c].numpy() - values.mean()) / (values.std(ddof=1) + 1e-5)
        got = xs[:, c].double().numpy()
        keep = observed[:, c].numpy()
        np.testing.assert_allclose(got[keep], expected[keep], rtol=1e-4, atol=1e-4)
    # the drop pattern is fixed per sample and seed
    again = load(root, mfcc=True, drop_rate=30)
    assert torch.equal(again[2][0], ds[2][0])
    other = load(root, mfcc=True, drop_rate=30, drop_seed=1)
    assert not torch.equal(other[2][0][-1], ds[2][0][-1])
    # raw audio: a mask channel over 16000 steps
    x, _ = load(root, "test", drop_rate=50)[0]
    assert x.shape == (2, 16000) and int(x[1].sum()) == 8000


def test_feature_cache_reused_then_rebuilt_when_corrupt_or_stale(root):
    first = load(root, mfcc=True)
    path = first.cache_path
    assert first.cache_built and os.path.isfile(path)
    assert os.path.dirname(path) == str(root / "SpeechCommands" / "processed")
    stamp = os.stat(path).st_mtime_ns
    second = load(root, "test", mfcc=True)
    assert not second.cache_built and os.stat(path).st_mtime_ns == stamp
    reference = second[0][0].clone()
    # truncated cache file -> rebuilt, same values
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    third = load(root, "test", mfcc=True)
    assert third.cache_built and torch.equal(third[0][0], reference)
    # a cache with other contents under the same name (wrong key) -> rebuilt
    torch.save({"features": torch.zeros(1)}, path)
    assert load(root, "test", mfcc=True).cache_built
    # other parameters -> another file; changed source files -> stale -> rebuilt
    assert load(root, mfcc=True, n_mfcc=13).cache_path != path
    write_wav(root / "SpeechCommands" / "yes" / "new_nohash_0.wav", np.ones(16000))
    refreshed = load(root, mfcc=True)
    assert refreshed.cache_built and len(refreshed) == len(first) + 1


def test_unwritable_cache_dir_still_loads(root, tmp_path, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    ds = load(root, mfcc=True, cache_dir=str(blocker / "cache"))
    assert len(ds) == 10 and ds.cache_built
    assert "could not write cache" in caplog.text


def test_pad_short_and_original_split(tmp_path):
    make_speech_commands(tmp_path, per_word=9)
    padded = load(tmp_path, pad_short=True, normalize="none")
    short = [i for i in range(len(padded)) if "spk08" in padded.files[padded.sample_id(i)]]
    assert len(short) == 10
    x, _ = padded[short[0]]
    assert (x[0, 12000:] == 0).all() and (x[0, :12000] != 0).any()

    from sklearn.model_selection import train_test_split

    parts = {s: load(tmp_path, s, split_scheme="original") for s in ("train", "val", "test")}
    labels = np.array([int(l) for l in parts["train"].labels])
    rows = np.arange(len(labels))
    train, rest, _, rest_y = train_test_split(rows, labels, train_size=0.7, random_state=0, stratify=labels)
    val, test = train_test_split(rest, train_size=0.5, random_state=1, stratify=rest_y)
    for name, expected in (("train", train), ("val", val), ("test", test)):
        assert np.array_equal(parts[name].indices, np.sort(expected))
    assert describe_dataset("SpeechCommands", split_scheme="original").split_sizes == {
        "train": 24_482, "val": 5_246, "test": 5_247}


def test_missing_root_names_folder_files_and_source(tmp_path):
    with pytest.raises(MissingDatasetError) as err:
        load(tmp_path / "empty")
    message = str(err.value)
    for part in ("SpeechCommands", str(tmp_path / "empty" / "SpeechCommands"), "validation_list.txt",
                 "speech_commands_v0.02.tar.gz", "SpeechCommands.download = True"):
        assert part in message


def test_truncated_wav_and_malformed_list(root):
    victim = root / "SpeechCommands" / "left" / "spk00_nohash_0.wav"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match="left/spk00_nohash_0.wav"):
        load(root)
    victim.write_bytes(data)
    (root / "SpeechCommands" / "testing_list.txt").write_text("yes/spk02_nohash_0.wav\n<html>oops</html>\n")
    with pytest.raises(CorruptDatasetError, match=r"testing_list.txt, line 2"):
        load(root)


def test_download_unpacks_the_tarball(tmp_path, monkeypatch):
    source = tmp_path / "source"
    base = make_speech_commands(source)
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # the published tarball has the words at its top level
        for entry in sorted(os.listdir(base)):
            tar.add(base / entry, arcname=entry)
    monkeypatch.setattr(speech_commands, "URL", archive.as_uri())
    monkeypatch.setattr(speech_commands, "URL_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    ds = load(tmp_path / "fresh", "val", download=True)
    assert len(ds) == 10 and (tmp_path / "fresh" / "SpeechCommands" / "speech_commands_v0.02.tar.gz").exists()


def test_dataloader_batches(root):
    x, y = next(iter(DataLoader(load(root, mfcc=True, drop_rate=50), batch_size=4, shuffle=True)))
    assert x.shape == (4, 21, 161) and y.dtype == torch.int64


KILLED_MID_BUILD = """
import os, signal, sys
from flexcore.data import speech_commands
speech_commands.CHUNK_CLIPS = 4
real_read, reads = speech_commands.read_wav, []
def read_then_die(*args, **kwargs):
    reads.append(args[0])
    if len(reads) == 10:  # inside the third chunk: two are saved
        os.kill(os.getpid(), signal.SIGKILL)
    return real_read(*args, **kwargs)
speech_commands.read_wav = read_then_die
speech_commands.SpeechCommands(root=sys.argv[1], mfcc=True, cache_dir=sys.argv[2])
"""


def test_killed_mfcc_build_resumes_from_saved_chunks_and_matches_an_uninterrupted_one(root, tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    cache = tmp_path / "cache"
    run = subprocess.run([sys.executable, "-c", KILLED_MID_BUILD, str(root), str(cache)], capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL, run.stderr
    (chunks,) = [p for p in cache.iterdir() if p.name.endswith(".pt.chunks")]
    assert sorted(p.name for p in chunks.iterdir()) == ["000000000000.pt", "000000000004.pt", "record.pt"]

    monkeypatch.setattr(speech_commands, "CHUNK_CLIPS", 4)
    real_read, reads = speech_commands.read_wav, []
    monkeypatch.setattr(speech_commands, "read_wav", lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    resumed = load(root, mfcc=True, cache_dir=str(cache))
    assert len(reads) == 30 - 8 and not chunks.exists()  # 30 full-length clips, 8 kept from the killed run
    monkeypatch.undo()
    fresh = load(root, mfcc=True, cache_dir=str(tmp_path / "fresh"))
    assert resumed.files == fresh.files and torch.equal(resumed.features, fresh.features)

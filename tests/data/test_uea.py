"""CharacterTrajectories from tiny .ts files in the UEA archive's exact format and layout."""
import zipfile

import numpy as np
import pytest
import torch

from flexcore.data import CorruptDatasetError, MissingDatasetError, build_dataset, describe_dataset
from flexcore.data.uea import CharacterTrajectories
from flexcore.registry import DATASETS

LABELS = [str(i) for i in range(1, 21)]


def ts_text(cases):
    """A CharacterTrajectories .ts file as the UEA archive writes it."""
    lines = [
        "#The data was derived from the UCI CharacterTrajectories set (velocity x, y and pen force).",
        "@problemName CharacterTrajectories",
        "@timeStamps false",
        "@missing false",
        "@univariate false",
        "@dimensions 3",
        "@equalLength false",
        "@classLabel true " + " ".join(LABELS),
        "@data",
    ]
    for series, label in cases:
        dims = [",".join("?" if np.isnan(v) else repr(float(v)) for v in row) for row in series]
        lines.append(":".join(dims) + ":" + label)
    return "\n".join(lines) + "\n"


def make_cases(rng, per_class, order):
    cases = []
    for _ in range(per_class):
        for label in order:
            length = int(rng.integers(20, 60))
            series = rng.normal(0, 1, (3, length)) * [[1.0], [2.0], [0.5]] + [[0.0], [1.0], [-3.0]]
            cases.append((series, label))
    return cases


def make_char_trajectories(folder, seed=0, train_per_class=4, test_per_class=3, missing=False):
    """TRAIN: first label '7' then the rest (tests renumbering by first appearance); TEST shuffled."""
    rng = np.random.default_rng(seed)
    order = ["7"] + [l for l in LABELS if l != "7"]
    train = make_cases(rng, train_per_class, order)
    test = make_cases(rng, test_per_class, list(rng.permutation(LABELS)))
    if missing:
        train[0][0][1, 3] = np.nan
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "CharacterTrajectories_TRAIN.ts").write_text(ts_text(train))
    (folder / "CharacterTrajectories_TEST.ts").write_text(ts_text(test))
    return train, test


@pytest.fixture
def root(tmp_path):
    cases = make_char_trajectories(tmp_path / "CharacterTrajectories", missing=True)
    return tmp_path, cases


def load(root, split="train", **kw):
    return build_dataset("CharacterTrajectories", split, root=str(root), **kw)


def test_shapes_labels_padding_and_splits(root):
    path, (train_cases, test_cases) = root
    parts = {s: load(path, s, normalize="none") for s in ("train", "val", "test")}
    assert DATASETS.get_raw("CharTrajectories") is CharacterTrajectories
    assert [len(parts[s]) for s in ("train", "val", "test")] == [68, 12, 60]
    names = parts["train"].class_names
    assert names[0] == "7" and names[1] == "1"  # renumbered by first appearance, as the original
    # val is a stratified hold-out of TRAIN; test is the TEST file, in order
    rows = {s: set(parts[s].indices.tolist()) for s in parts}
    assert rows["train"] | rows["val"] == set(range(80)) and not rows["train"] & rows["val"]
    assert len({int(parts["val"].labels[r]) for r in rows["val"]}) == 12
    assert parts["test"].indices.tolist() == list(range(80, 140))
    cases = train_cases + test_cases
    for split in ("train", "test"):
        ds = parts[split]
        for i in (0, len(ds) - 1):
            x, y = ds[i]
            series, label = cases[ds.sample_id(i)]
            assert x.shape == (3, 182) and x.dtype == torch.float32
            assert names[y] == label
            n = series.shape[1]
            expected = np.nan_to_num(series)
            np.testing.assert_allclose(x[:, :n].numpy(), expected, rtol=1e-6)
            # padded to 182 by repeating the last value
            assert (x[:, n:] == x[:, n - 1 : n]).all()
    meta = parts["train"].metadata
    assert (meta.in_channels, meta.num_classes, meta.shape, meta.dim) == (3, 20, (182,), 1)
    assert meta.split_sizes == {"train": 1209, "val": 213, "test": 1436}  # the published archive's
    assert describe_dataset("CharacterTrajectories", normalize="none", root="/x") == meta
    assert torch.equal(parts["val"].targets, parts["val"].labels[torch.from_numpy(parts["val"].indices)])


def test_channel_normalisation_ignores_missing_values(root):
    path, _ = root
    plain = load(path, normalize="none")
    train_rows = plain.indices
    raw = plain.features[torch.from_numpy(train_rows)].double().numpy()  # NaN where '?'
    mean = np.nanmean(raw, axis=(0, 2))
    std = np.array([np.nanstd(raw[:, c], ddof=1) for c in range(3)])
    for split in ("train", "test"):
        norm = load(path, split)
        for i in (0, 5):
            x = norm[i][0].double().numpy()
            source = norm.features[norm.sample_id(i)].double().numpy()
            expected = np.nan_to_num((source - mean[:, None]) / (std[:, None] + 1e-5))
            np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)
    # the '?' of case 0 (wherever the hold-out put it) is not counted and becomes 0
    assert torch.isnan(plain.features[0, 1, 3])
    holder = next(load(path, s) for s in ("train", "val") if 0 in load(path, s).indices)
    assert holder[int(np.flatnonzero(holder.indices == 0)[0])][0][1, 3] == 0


def test_drop_rate_mask_channel_and_time_step_quirk(root):
    path, _ = root
    ds = load(path, drop_rate=50)
    assert ds.metadata.in_channels == 4
    x, _ = ds[0]
    assert x.shape == (4, 182) and int(x[3].sum()) == 182 - 91
    assert (x[:3, x[3] == 0] == 0).all()
    # the original's per-time-step statistics, pooled over channels
    plain = load(path, normalize="none")
    raw = plain.features[torch.from_numpy(plain.indices)].double().numpy()
    mean = np.nanmean(raw, axis=(0, 1))
    std = np.array([np.nanstd(raw[:, :, t], ddof=1) for t in range(182)])
    quirk = load(path, "test", normalize="time_step")
    source = quirk.features[quirk.sample_id(2)].double().numpy()
    np.testing.assert_allclose(quirk[2][0].numpy(), (source - mean) / (std + 1e-5), rtol=1e-4, atol=1e-5)


def test_original_split_scheme_matches_sklearn(tmp_path):
    make_char_trajectories(tmp_path / "CharacterTrajectories")
    from sklearn.model_selection import train_test_split

    parts = {s: load(tmp_path, s, split_scheme="original") for s in ("train", "val", "test")}
    labels = parts["train"].labels.numpy()
    rows = np.arange(140)
    train, rest, _, rest_y = train_test_split(rows, labels, train_size=0.7, random_state=0, stratify=labels)
    val, test = train_test_split(rest, train_size=0.5, random_state=1, stratify=rest_y)
    for name, expected in (("train", train), ("val", val), ("test", test)):
        assert parts[name].indices.tolist() == sorted(expected.tolist())
    assert parts["train"].metadata.split_sizes == {"train": 2000, "val": 429, "test": 429}


def test_archive_layout_and_missing_root(tmp_path):
    make_char_trajectories(tmp_path / "Multivariate_ts" / "CharacterTrajectories")
    assert len(load(tmp_path, "test")) == 60
    with pytest.raises(MissingDatasetError) as err:
        load(tmp_path / "nothing")
    message = str(err.value)
    for part in ("CharacterTrajectories_TRAIN.ts", "CharacterTrajectories_TEST.ts",
                 str(tmp_path / "nothing" / "CharacterTrajectories"), "timeseriesclassification.com",
                 "CharacterTrajectories.download = True"):
        assert part in message


def test_corrupt_files_are_named(tmp_path):
    folder = tmp_path / "CharacterTrajectories"
    make_char_trajectories(folder)
    test_file = folder / "CharacterTrajectories_TEST.ts"
    text = test_file.read_text()
    test_file.write_text(text[: len(text) // 2])  # truncated inside a case
    with pytest.raises(CorruptDatasetError, match="CharacterTrajectories_TEST.ts, line"):
        load(tmp_path)
    test_file.write_text(text.replace("@dimensions 3", "@dimensions 2"))
    with pytest.raises(CorruptDatasetError, match="CharacterTrajectories_TEST.ts"):
        load(tmp_path)
    with pytest.raises(ValueError, match="pass length=5"):
        make_char_trajectories(folder)
        load(tmp_path, length=5)


def test_download_extracts_the_ts_files_from_the_zip(tmp_path, monkeypatch):
    source = tmp_path / "zipsrc"
    make_char_trajectories(source)
    archive = tmp_path / "CharacterTrajectories.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("CharacterTrajectories_TRAIN.ts", "CharacterTrajectories_TEST.ts"):
            z.write(source / name, arcname=f"CharacterTrajectories/{name}")
    monkeypatch.setattr(CharacterTrajectories, "url", classmethod(lambda cls: archive.as_uri()))
    ds = load(tmp_path / "fresh", "test", download=True)
    assert len(ds) == 60

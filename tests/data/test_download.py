"""The one download helper every dataset uses: atomic fetch, MD5, safe unpacking, clear failures."""
import hashlib
import io
import os
import tarfile
import zipfile

import pytest

from flexcore.data import CorruptDatasetError, MissingDatasetError
from flexcore.data.download import download_files, extract_archive, fetch_url


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_checks_md5_and_leaves_no_partial_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = hashlib.md5(b"payload").hexdigest()
    dest = tmp_path / "out" / "file.bin"
    assert fetch_url(src.as_uri(), str(dest), good) == str(dest) and dest.read_bytes() == b"payload"
    with pytest.raises(ValueError, match="MD5"):
        fetch_url(src.as_uri(), str(tmp_path / "bad.bin"), "0" * 32)
    assert not os.path.exists(tmp_path / "bad.bin") and not os.path.exists(tmp_path / "bad.bin.part")


def test_archives_unpack_whole_or_named_members_flat(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, {"top/x.ts": b"x", "top/deep/y.ts": b"y", "top/z.txt": b"z"})
    extract_archive(str(archive), str(tmp_path / "whole"))
    assert (tmp_path / "whole" / "top" / "deep" / "y.ts").read_bytes() == b"y"
    extract_archive(str(archive), str(tmp_path / "flat"), members=["x.ts", "y.ts"])
    assert sorted(os.listdir(tmp_path / "flat")) == ["x.ts", "y.ts"]
    with pytest.raises(CorruptDatasetError, match="lacks missing.ts"):
        extract_archive(str(archive), str(tmp_path / "flat"), members=["missing.ts"])


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_members_outside_the_folder_are_refused(tmp_path, kind):
    archive = tmp_path / f"evil.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("../escaped.txt", b"no")
    else:
        _tar(archive, {"../escaped.txt": b"no"})
    with pytest.raises(CorruptDatasetError, match="evil"):
        extract_archive(str(archive), str(tmp_path / "dest"))
    assert not (tmp_path / "escaped.txt").exists()


def test_failed_download_names_url_and_folder(tmp_path):
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(MissingDatasetError) as err:
        download_files("Demo", [(url, "nowhere.tar.gz", None)], str(tmp_path / "root"))
    message = str(err.value)
    assert "Demo" in message and url in message and str(tmp_path / "root") in message and "by hand" in message

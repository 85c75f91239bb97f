"""The one download helper every dataset uses: atomic resumable fetch, checksums, safe unpacking, clear failures."""
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import zipfile

import pytest

from flexcore.data import CorruptDatasetError, MissingDatasetError
from flexcore.data.download import IncompleteDownloadError, download_files, extract_archive, fetch_url


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


# -- resumable HTTP downloads, against a real server on 127.0.0.1 ------------------------------
class _Server:
    """A threaded HTTP server for one payload: honours Range (or not) and can drop connections mid-body."""

    def __init__(self, payload: bytes, honour_range: bool = True, drops: int = 0):
        self.payload, self.honour_range, self.drops = payload, honour_range, drops
        self.requests = []  # the Range header of each request (None without one)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                wanted = self.headers.get("Range")
                server.requests.append(wanted)
                start = int(wanted[len("bytes="):].rstrip("-")) if wanted and server.honour_range else 0
                size = len(server.payload)
                if start >= size and wanted and server.honour_range:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drops:  # send half of the body, then hang up
                    server.drops -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


PAYLOAD = os.urandom(3 << 20)  # three 1 MiB blocks: the drop lands mid-way through the copy loop
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def test_interrupted_download_keeps_part_and_next_call_resumes_with_range(tmp_path):
    dest = tmp_path / "data.bin"
    with _Server(PAYLOAD, drops=1) as server:
        with pytest.raises(IncompleteDownloadError, match="run again to resume"):
            fetch_url(server.url("data.bin"), str(dest), SHA256, progress=False, retries=0)
        part = tmp_path / "data.bin.part"
        assert not dest.exists() and part.stat().st_size == len(PAYLOAD) // 2
        assert fetch_url(server.url("data.bin"), str(dest), SHA256, progress=False, retries=0) == str(dest)
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "data.bin"
    with _Server(PAYLOAD, honour_range=False, drops=1) as server:
        with pytest.raises(IncompleteDownloadError):
            fetch_url(server.url("data.bin"), str(dest), SHA256, progress=False, retries=0)
        fetch_url(server.url("data.bin"), str(dest), SHA256, progress=False, retries=0)
    assert server.requests[1] == f"bytes={len(PAYLOAD) // 2}-"  # asked, got a 200, started over
    assert dest.read_bytes() == PAYLOAD


def test_dropped_connections_resume_within_one_call_and_part_already_complete(tmp_path):
    with _Server(PAYLOAD, drops=2) as server:
        fetch_url(server.url("a.bin"), str(tmp_path / "a.bin"), SHA256, progress=False, retries=2)
        assert len(server.requests) == 3 and (tmp_path / "a.bin").read_bytes() == PAYLOAD
        (tmp_path / "b.bin.part").write_bytes(PAYLOAD)  # a run killed between the last byte and the rename
        fetch_url(server.url("b.bin"), str(tmp_path / "b.bin"), SHA256, progress=False)
        assert server.requests[-1] == f"bytes={len(PAYLOAD)}-"  # answered 416: nothing left to fetch
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD
    (tmp_path / "c.bin.part").write_bytes(PAYLOAD + b"stale tail")  # longer than the file: a 416, start over
    with _Server(PAYLOAD) as server:
        fetch_url(server.url("c.bin"), str(tmp_path / "c.bin"), SHA256, progress=False)
    assert server.requests == [f"bytes={len(PAYLOAD) + 10}-", None] and (tmp_path / "c.bin").read_bytes() == PAYLOAD


def test_wrong_checksum_removes_the_download_and_names_both_digests(tmp_path):
    with _Server(PAYLOAD) as server:
        with pytest.raises(ValueError, match=f"SHA256 of the download is {SHA256}, expected {'0' * 64}"):
            fetch_url(server.url("x.bin"), str(tmp_path / "x.bin"), "0" * 64, progress=False)
        with pytest.raises(ValueError, match="neither an MD5"):
            fetch_url(server.url("x.bin"), str(tmp_path / "x.bin"), "abc", progress=False)
    assert os.listdir(tmp_path) == []


def test_download_files_shows_progress_and_unpacks_a_verified_archive(tmp_path, capsys):
    archive = tmp_path / "src.tar.gz"
    _tar(archive, {"pkg/a.txt": b"alpha"})
    blob = archive.read_bytes()
    with _Server(blob, drops=1) as server:
        download_files("Demo", [(server.url("pkg.tar.gz"), "pkg.tar.gz", hashlib.md5(blob).hexdigest())],
                       str(tmp_path / "root"))
    assert (tmp_path / "root" / "pkg" / "a.txt").read_bytes() == b"alpha"
    bar = capsys.readouterr().err
    assert "pkg.tar.gz" in bar and "100%" in bar


def test_published_checksums_are_well_formed():
    from flexcore.data import CIFAR10, CIFAR100, MNIST, STL10, speech_commands

    downloads = [*CIFAR10.DOWNLOADS, *CIFAR100.DOWNLOADS, *MNIST.DOWNLOADS, *STL10.DOWNLOADS,
                 (speech_commands.URL, "", speech_commands.URL_SHA256)]
    for url, _, checksum in downloads:
        assert checksum is not None and len(checksum) in (32, 64), url
        int(checksum, 16)

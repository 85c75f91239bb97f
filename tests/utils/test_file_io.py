import os

import pytest

from flexcore.utils import file_io
from flexcore.utils.file_io import atomic_open


def test_atomic_open_replaces_whole_files_with_the_usual_permissions(tmp_path):
    path = tmp_path / "metrics.json"
    with atomic_open(str(path), "w") as f:
        f.write("new")
    assert path.read_text() == "new"
    # as open() would make it (0666 & ~umask), not mkstemp's private 0600
    assert (path.stat().st_mode & 0o777) == 0o666 & ~file_io._UMASK
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), "w") as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["metrics.json"]

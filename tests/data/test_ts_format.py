"""The .ts reader on files in the sktime/aeon format, and its errors on damaged ones."""
import numpy as np
import pytest

from flexcore.data import CorruptDatasetError
from flexcore.data.ts_format import read_ts

HEADER = """#Comment lines as in the UEA files.
#Several of them.
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data
"""


def write(tmp_path, body, header=HEADER, name="Toy_TRAIN.ts", newline="\n"):
    path = tmp_path / name
    path.write_bytes((header + body).replace("\n", newline).encode())
    return str(path)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_reads_cases_labels_and_missing_values(tmp_path, newline):
    path = write(tmp_path, "1,2,3:4,5,6:b\n0.5,?,-1e-3,7:1,2,3,4:a\n\n9:8:c\n", newline=newline)
    ts = read_ts(path)
    assert ts.problem == "Toy" and ts.class_labels == ["a", "b", "c"] and ts.labels == ["b", "a", "c"]
    assert ts.channels == 2 and ts.max_length == 4
    np.testing.assert_array_equal(ts.series[0], [[1, 2, 3], [4, 5, 6]])
    assert ts.series[1].shape == (2, 4) and np.isnan(ts.series[1][0, 1]) and ts.series[1][0, 2] == -1e-3
    assert ts.header["equallength"] == "false"


def test_unequal_dimensions_within_a_case_repeat_their_last_value(tmp_path):
    ts = read_ts(write(tmp_path, "1,2,3,4:5,6:a\n"))
    np.testing.assert_array_equal(ts.series[0], [[1, 2, 3, 4], [5, 6, 6, 6]])


@pytest.mark.parametrize(
    "header, body, message",
    [
        (HEADER, "1,2:3,4:a\n1,2:b\n", r"line 12: 1 dimensions, expected 2"),
        (HEADER, "1,2:3,x:a\n", r"line 11, dimension 2: not a comma-separated list"),
        (HEADER, "1,2:3,4:z\n", r"line 11: label 'z' is not among"),
        (HEADER, "", "no cases after @data"),
        (HEADER.replace("@data\n", ""), "", "no @data line"),
        (HEADER.replace("@classLabel true a b c\n", ""), "1:2:a\n", "before the required header keys @classlabel"),
        (HEADER.replace("@timeStamps false", "@timeStamps true"), "(0,1):(0,2):a\n", "timestamped"),
        (HEADER.replace("@dimensions 2", "@dimensions 3"), "1:2:a\n", "2 dimensions, expected 3"),
        (HEADER.replace("@univariate false", "@univariate true"), "1:2:a\n", "univariate true but @dimensions 2"),
        (HEADER.replace("@equalLength false", "@equalLength true"), "1,2:3,4:a\n1:2:b\n", "different lengths"),
        (HEADER.replace("@equalLength false", "@equalLength maybe"), "1:2:a\n", "must be true or false"),
        (HEADER.replace("@classLabel true a b c", "@classLabel true"), "1:2:a\n", "without the list of labels"),
        ("1,2,3:4:a\n", "", "line 1: expected an @key header line"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, header, body, message):
    path = write(tmp_path, body, header=header)
    with pytest.raises(CorruptDatasetError, match=message) as err:
        read_ts(path)
    assert "Toy_TRAIN.ts" in str(err.value)


def test_truncated_and_binary_files(tmp_path):
    full = write(tmp_path, "1.5,2.5,3.5:4,5,6:a\n7,8,9:1,2,3:b\n")
    data = open(full, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: data.rindex(b":1,2")])  # cut inside the last case
    with pytest.raises(CorruptDatasetError, match=r"cut.ts, line 12"):
        read_ts(str(cut))
    binary = tmp_path / "binary.ts"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 10)
    with pytest.raises(CorruptDatasetError, match="binary.ts"):
        read_ts(str(binary))


def test_unknown_header_keys_are_ignored_with_a_warning(tmp_path, caplog):
    ts = read_ts(write(tmp_path, "1:2:a\n", header=HEADER.replace("@data", "@author someone\n@data")))
    assert ts.labels == ["a"] and "@author" in caplog.text

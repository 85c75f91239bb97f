"""Figures the docs state are the ones the code produces (or are at least consistent with each other)."""
import glob
import os
import re

import pytest

from flexcore.data.digits import Digits
from flexcore.benchmarks.quick_start import documented_figure_checks, documented_figures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def _counts(text):
    return [int(n.replace(",", "")) for n in re.findall(r"(\d[\d,]*) train / (\d+) val / (\d+) test", text)[0]]


@pytest.mark.parametrize("config", ["quick/digits_flexnet.gin", "quick/sdigits_flextcn.gin"])
def test_digits_split_sizes_in_config_comments(config):
    sizes = [len(Digits(split=split)) for split in ("train", "val", "test")]
    assert sizes == [1258, 180, 359]
    assert _counts(_read("gin_configs", *config.split("/"))) == sizes


def test_digits_split_sizes_in_datasets_doc():
    text = _read("docs", "datasets.md").split("### `Digits`", 1)[1].split("###", 1)[0]
    test, val, train = (int(n.replace(",", "")) for n in re.findall(r"\((\d[\d,]*)\)", text)[:3])
    assert [train, val, test] == [len(Digits(split=s)) for s in ("train", "val", "test")]


def test_readme_quick_start_figures_follow_the_per_cpu_table():
    rows = documented_figures()
    assert len(rows) >= 2 and all(50 < final <= 100 and 50 < best <= 100 for _, final, best in rows)
    readme = _read("README.md").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    xeon = [row for row in rows if row[0].startswith("Intel(R) Xeon(R) Processor @ 2.80GHz")][0]
    assert f"{xeon[1]:.2f} % (final model) and {xeon[2]:.2f} % (best-validation model)" in " ".join(readme.split())
    for column, label in ((1, "final"), (2, "best-validation")):
        low, high = min(r[column] for r in rows), max(r[column] for r in rows)
        assert f"{low:.2f}–{high:.2f} % ({label})" in readme
    assert "the same digits on every run" not in readme


def _crossres_rows():
    """``[(cpu, [at source, out of the box, fine-tuned] as written)]`` from quick.md's cross-resolution table."""
    lines = _read("docs", "reproduction", "quick.md").split("<!-- crossres-figures", 1)[1].splitlines()[1:]
    rows = []
    for line in lines[2:]:  # after the header and its rule
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], [cell.removesuffix(" %") for cell in cells[1:4]]))
    return rows


def test_readme_crossres_figures_follow_the_per_cpu_table():
    rows = _crossres_rows()
    assert len(rows) >= 2 and all(0 <= float(v) <= 100 for _, figures in rows for v in figures)
    readme_row = [line for line in _read("README.md").splitlines() if "quick/digits_crossres.gin` |" in line]
    assert len(readme_row) == 1
    for cpu, figures in rows:
        assert " / ".join(figures) in readme_row[0], f"README lacks {cpu}'s cross-resolution figures {figures}"
    assert "Xeon" in readme_row[0] and "unrecorded CPU" in readme_row[0]
    quick_row = [line for line in _read("docs", "reproduction", "quick.md").splitlines()
                 if line.startswith("| `digits_crossres.gin` | 24,430")][0]
    xeon = [figures for cpu, figures in rows if cpu == "Intel(R) Xeon(R) Processor @ 2.80GHz"][0]
    assert all(f"{v} %" in quick_row for v in xeon)


def test_crossres_source_stage_is_the_quick_start_run():
    # The 8-px stage trains the quick start's config with its seed: same CPU, same best-validation model.
    quick_start = {cpu: best for cpu, _, best in documented_figures()}
    for cpu, figures in _crossres_rows():
        assert cpu in quick_start, f"{cpu} has a cross-resolution row but no quick-start row"
        assert float(figures[0]) == quick_start[cpu]


def test_benchmark_compares_with_this_cpus_row_or_the_range():
    rows = documented_figures()
    final_low = min(r[1] for r in rows)
    checks = documented_figure_checks(final_low - 1.0, rows[0][2])
    assert len(checks) == 2 and not checks[0].ok  # a point below every documented figure is a miss


def test_no_unrounded_floats_in_doc_tables():
    files = glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True) + [os.path.join(REPO, "README.md")]
    long_floats = [(os.path.relpath(path, REPO), number) for path in files
                   for line in open(path, encoding="utf-8") if line.startswith("|")
                   for number in re.findall(r"(?<![\w.])\d+\.\d{7,}(?![\w.])", line)]
    assert not long_floats, f"round these table entries: {long_floats[:5]}"

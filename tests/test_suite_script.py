"""benchmarks/suite.py's split: stratified, deterministic, disjoint, written once and then reused."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def suite():
    return load_script("suite_script", "suite.py")


LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 2


def test_split_is_stratified_disjoint_and_complete(suite):
    parts = suite.stratified_split(LABELS, seed=0)
    indices = [i for part in suite.PARTS for i in parts[part]]
    assert sorted(indices) == list(range(len(LABELS)))  # every row once, in exactly one part
    for part, share in (("validation", 0.1), ("test", 0.1)):
        counts = Counter(LABELS[i] for i in parts[part])
        assert counts == {"a": round(50 * share), "b": round(30 * share), "c": 1}  # "d" (2 rows) only trains
    assert Counter(LABELS[i] for i in parts["train"]) == {"a": 40, "b": 24, "c": 8, "d": 2}


def test_split_depends_on_the_seed_only(suite):
    assert suite.stratified_split(LABELS, seed=3) == suite.stratified_split(list(LABELS), seed=3)
    assert suite.stratified_split(LABELS, seed=3) != suite.stratified_split(LABELS, seed=4)


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def test_split_is_written_once_and_a_changed_source_is_refused(suite, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    rows = [(f"text number {i}, with a comma\nand a newline", label) for i, label in enumerate(LABELS)]
    _write(data / "tiny.csv", rows)
    first = suite.load_split("tiny", data, out, seed=0)
    assert sum(len(first[part][0]) for part in suite.PARTS) == len(rows)
    assert set(first["train"][0]).isdisjoint(first["test"][0])
    (out / "splits" / "tiny" / "test.csv").write_text("text,label\nedited,a\n")
    assert suite.load_split("tiny", data, out, seed=0)["test"] == (["edited"], ["a"])  # read back, not re-split
    _write(data / "tiny.csv", rows[1:])
    with pytest.raises(SystemExit, match="other data"):
        suite.load_split("tiny", data, out, seed=0)
    with pytest.raises(SystemExit, match="another seed"):
        _write(data / "tiny.csv", rows)
        suite.load_split("tiny", data, out, seed=1)


def test_overrides_read_json_values(suite):
    assert suite.parse_overrides(["max_len=256", "pooling=max", "bidirectional=true"]) == {
        "max_len": 256,
        "pooling": "max",
        "bidirectional": True,
    }
    with pytest.raises(SystemExit):
        suite.parse_overrides(["max_len"])

"""Streaming prediction: same answers as Predictor in input order, columns kept, bounded memory,
no half-written output, and the `predict --output` command line."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from rnnonnx.batch import RowProgress, iter_texts, predict_file, predict_proba
from rnnonnx.errors import DataError
from rnnonnx.predictor import Predictor
from tests.conftest import run_cli
from tests.test_cli import imported_after

TEXTS = [
    "A moving, gorgeous film",
    'He said "dull"; I said, well, fine',
    "",
    "Line one\nline two, still the same row",
    "Ünïcödé wörds and 日本語 too",
    "bad bad bad terrible awful",
    "great",
] * 3


def read_rows(path: Path) -> list[dict]:
    """An output file read back as dicts, whatever its format."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))


def write_input(path: Path, fmt: str, texts: list[str], extra: str = "note") -> None:
    """Rows with an id, the text and one more column, in ``fmt``."""
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            for i, text in enumerate(texts):
                handle.write(json.dumps({"id": i, "text": text, extra: f"n{i}"}, ensure_ascii=False) + "\n")
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",")
        writer.writerow(["id", "text", extra])
        writer.writerows([i, text, f"n{i}"] for i, text in enumerate(texts))


@pytest.fixture(scope="module", params=["ids", "text"])
def predictor(tiny_bundle, request) -> Predictor:
    """The predictor on each graph: they bucket by different lengths (tokens, characters)."""
    return Predictor(tiny_bundle, device="cpu", threads=1, graph=request.param)


@pytest.mark.parametrize(
    ("fmt", "extra", "names"),
    [
        ("csv", "note", ("label", "score")),
        ("tsv", "label", ("predicted_label", "predicted_score")),
        ("jsonl", "note", ("label", "score")),
    ],
)
def test_stream_matches_predictor_in_input_order(predictor, tmp_path, fmt, extra, names):
    source, target = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    write_input(source, fmt, TEXTS, extra)
    stats = predict_file(predictor, source, target, chunk_rows=4)
    rows = read_rows(target)
    expected = predictor.predict(TEXTS)
    assert stats.rows == len(TEXTS) == len(rows)
    assert list(rows[0]) == ["id", "text", extra, *names]
    for i, (row, want) in enumerate(zip(rows, expected)):
        assert str(row["id"]) == str(i) and row["text"] == TEXTS[i] and row[extra] == f"n{i}"
        assert row[names[0]] == want.label
        assert float(row[names[1]]) == pytest.approx(want.score, abs=1e-6)


def test_bucketing_does_not_change_results(predictor, tmp_path):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(TEXTS[:7], size=rng.integers(1, 8))) for _ in range(300)]
    write_input(tmp_path / "in.csv", "csv", texts)
    predict_file(predictor, tmp_path / "in.csv", tmp_path / "bucketed.csv", chunk_rows=100)
    predict_file(predictor, tmp_path / "in.csv", tmp_path / "plain.csv", chunk_rows=100, bucketing=False)
    bucketed, plain = read_rows(tmp_path / "bucketed.csv"), read_rows(tmp_path / "plain.csv")
    assert [r["label"] for r in bucketed] == [r["label"] for r in plain]
    np.testing.assert_allclose([float(r["score"]) for r in bucketed], [float(r["score"]) for r in plain], atol=2e-6)
    np.testing.assert_allclose(predict_proba(predictor, texts, bucketing=False), predictor.predict_proba(texts), atol=1e-6)


def test_txt_input_and_format_conversions(predictor, tmp_path):
    (tmp_path / "in.txt").write_text("great film\n\nawful\n", encoding="utf-8")
    predict_file(predictor, tmp_path / "in.txt", tmp_path / "out.csv")
    assert [r["text"] for r in read_rows(tmp_path / "out.csv")] == ["great film", "", "awful"]
    assert list(iter_texts(tmp_path / "in.txt")) == ["great film", "", "awful"]
    write_input(tmp_path / "in.csv", "csv", TEXTS[:3])
    predict_file(predictor, tmp_path / "in.csv", tmp_path / "out.jsonl")
    assert [r["text"] for r in read_rows(tmp_path / "out.jsonl")] == TEXTS[:3]
    with pytest.raises(DataError, match="name the output .csv"):
        predict_file(predictor, tmp_path / "in.txt", tmp_path / "out.txt")
    write_input(tmp_path / "in.jsonl", "jsonl", TEXTS[:3])
    with pytest.raises(DataError, match="only be written as JSON Lines"):
        predict_file(predictor, tmp_path / "in.jsonl", tmp_path / "out.csv")
    assert not (tmp_path / "out.txt").exists()


def test_input_errors_name_the_line(predictor, tmp_path):
    (tmp_path / "cols.csv").write_text("id,body\n1,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'text'.*'body'"):
        predict_file(predictor, tmp_path / "cols.csv", tmp_path / "out.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        predict_file(predictor, tmp_path / "bad.jsonl", tmp_path / "out.jsonl")
    (tmp_path / "wide.csv").write_text("text\na\nb,c\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3 has 2 fields"):
        predict_file(predictor, tmp_path / "wide.csv", tmp_path / "out.csv")


def assert_no_output(directory: Path, target: Path, before: str | None) -> None:
    if before is None:
        assert not target.exists()
    else:
        assert target.read_text(encoding="utf-8") == before
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_failure_midway_leaves_no_output_and_keeps_the_old_one(predictor, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "wb") as handle:
        handle.write(b"text\n" + b"fine text\n" * 50 + b"bad \xff byte\n")
    target = tmp_path / "out" / "preds.csv"
    with pytest.raises(DataError, match=r"line 52 is not valid UTF-8 \(byte 0xff\)"):
        predict_file(predictor, source, target, chunk_rows=8)
    assert_no_output(target.parent, target, None)
    target.write_text("previous predictions\n", encoding="utf-8")
    with pytest.raises(DataError):
        predict_file(predictor, source, target, chunk_rows=8)
    assert_no_output(target.parent, target, "previous predictions\n")


class Interrupting:
    """A predictor stand-in that is interrupted (Ctrl-C) on its second batch."""

    batch_size = 4
    labels = ["neg", "pos"]

    def __init__(self) -> None:
        self.calls = 0

    def predict_proba(self, texts):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return np.tile(np.float32([0.25, 0.75]), (len(texts), 1))


def test_interrupt_leaves_no_output_and_keeps_the_old_one(tmp_path):
    write_input(tmp_path / "in.csv", "csv", ["text"] * 40)
    target = tmp_path / "preds.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_file(Interrupting(), tmp_path / "in.csv", target, chunk_rows=8)
    assert_no_output(tmp_path, target, None)
    target.write_text("kept\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        predict_file(Interrupting(), tmp_path / "in.csv", target, chunk_rows=8)
    assert_no_output(tmp_path, target, "kept\n")


class Constant(Interrupting):
    """A predictor stand-in that never fails, to time and trace streaming alone."""

    def predict_proba(self, texts):
        return np.tile(np.float32([0.25, 0.75]), (len(texts), 1))


def peak_traced(predictor, source: Path, target: Path) -> int:
    tracemalloc.start()
    try:
        predict_file(predictor, source, target, chunk_rows=200)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_file(tmp_path):
    text = "a review of some length, " * 4
    write_input(tmp_path / "small.csv", "csv", [text] * 1_000)
    write_input(tmp_path / "big.csv", "csv", [text] * 20_000)
    small = peak_traced(Constant(), tmp_path / "small.csv", tmp_path / "small-out.csv")
    big = peak_traced(Constant(), tmp_path / "big.csv", tmp_path / "big-out.csv")
    assert len(read_rows(tmp_path / "big-out.csv")) == 20_000
    assert big < 1.5 * small, (small, big)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_rows_per_second_only_on_a_terminal():
    shown = FakeTerminal()
    bar = RowProgress(True, stream=shown)
    bar.update(8192, 0.5)
    bar.finish()
    assert "8,192 rows" in shown.getvalue() and "rows/s" in shown.getvalue() and "50.0%" in shown.getvalue()
    for stream, enabled in ((io.StringIO(), True), (FakeTerminal(), False)):
        bar = RowProgress(enabled, stream=stream)
        bar.update(10, None)
        bar.finish()
        assert stream.getvalue() == ""


def test_cli_output_streams_and_keeps_stdout_modes(tiny_bundle, tmp_path):
    write_input(tmp_path / "in.csv", "csv", TEXTS)
    done = run_cli("predict", str(tiny_bundle), "--input", "in.csv", "--output", "preds.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and f"{len(TEXTS)} rows in" in done.stderr and "\r" not in done.stderr
    quiet = run_cli(
        "predict", str(tiny_bundle), "--input", "in.csv", "--output", "plain.csv", "--quiet", "--no-bucketing", cwd=tmp_path
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert [r["label"] for r in read_rows(tmp_path / "preds.csv")] == [r["label"] for r in read_rows(tmp_path / "plain.csv")]
    refused = run_cli("predict", str(tiny_bundle), "some text", "--output", "x.csv", cwd=tmp_path)
    assert (
        refused.returncode != 0
        and refused.stderr.startswith("Error: --output streams a file")
        and "Traceback" not in refused.stderr
    )
    (tmp_path / "bad.csv").write_bytes(b"text\nok\n\xfe\n")
    failed = run_cli("predict", str(tiny_bundle), "--input", "bad.csv", "--output", "preds.csv", cwd=tmp_path)
    assert failed.returncode != 0 and "line 3 is not valid UTF-8" in failed.stderr
    assert len(read_rows(tmp_path / "preds.csv")) == len(TEXTS)


def test_predict_output_does_not_import_torch(tiny_bundle, tmp_path):
    write_input(tmp_path / "in.jsonl", "jsonl", TEXTS[:5])
    output, heavy = imported_after(
        ["predict", str(tiny_bundle), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"), "--quiet"]
    )
    assert heavy == [] and len(read_rows(tmp_path / "out.jsonl")) == 5


def test_stream_keeps_unicode_line_separators_and_replaces_lone_surrogates(tmp_path):
    """The streamed reader is the one ``train`` uses: JSON Lines split at \\n only; a lone
    surrogate escape (half an emoji) is written back as U+FFFD, which UTF-8 can hold."""
    texts = ["one\u2028two", "three\u2029four", "five\x85six", "cut emoji \ud83d", "pair \ud83d\ude00 kept"]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=i % 2 == 1) + "\n" for i, t in enumerate(texts[:3]))
        + "".join(json.dumps({"text": t}) + "\n" for t in texts[3:]),
        encoding="utf-8",
    )
    expected = texts[:3] + ["cut emoji \ufffd", "pair \U0001f600 kept"]
    assert list(iter_texts(source)) == expected
    stats = predict_file(Constant(), source, tmp_path / "out.jsonl")
    assert stats.rows == 5 and [r["text"] for r in read_rows(tmp_path / "out.jsonl")] == expected


def test_stream_reads_fields_past_pythons_csv_limit(tmp_path):
    body = "a long message " * 20_000
    write_input(tmp_path / "in.csv", "csv", ["short", body])
    predict_file(Constant(), tmp_path / "in.csv", tmp_path / "out.csv")
    assert [r["text"] for r in read_rows(tmp_path / "out.csv")] == ["short", body]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("plain.csv.gz", b"text\nfine\n", "not gzip-compressed, though its name ends in .gz"),
        (
            "cut.csv.gz",
            gzip.compress(b"text\n" + b"".join(b"row %d\n" % i for i in range(5000)))[:3000],
            "the gzip data ends early",
        ),
        ("dup.csv", b"text,note,note\na,b,c\n", "line 1: the header names the column 'note' twice"),
        ("object.jsonl", b'{"text": "fine"}\n{"text": {"nested": 1}}\n', "line 2: the value of 'text' is an object"),
        ("open.tsv", b'text\tid\nfine\t1\n"unclosed\t2\nmore\t3\n', "the quoted field on line 3 is never closed"),
    ],
)
def test_stream_input_errors_leave_no_output(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    target = tmp_path / ("out" + "".join(Path(name).suffixes))
    with pytest.raises(DataError, match=message):
        predict_file(Constant(), tmp_path / name, target, chunk_rows=64)
    assert_no_output(tmp_path, target, None)

"""Streaming prediction over files of any size: bounded memory, input order kept, atomic output.

The input is read a chunk of rows at a time; each chunk is classified with its texts grouped by
token count (bucketing, so batches carry little padding) and written back in input order, with
every original column kept and ``label`` and ``score`` added. The output appears under its
name only once complete, so an interrupted run never leaves a half-written file there.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from .data import detect_format
from .errors import DataError, OutputError, RnnonnxError
from .files import atomic_file
from .predictor import predictions_from_proba
from .progress import Progress
from .records import Records, open_records

CHUNK_ROWS = 8192
STDOUT = "-"
OUTPUT_NAMES = (("label", "score"), ("predicted_label", "predicted_score"))
SCORE_DECIMALS = 6


class ProbaModel(Protocol):
    """What streaming needs of a predictor (``rnnonnx.Predictor`` is one)."""

    batch_size: int

    @property
    def labels(self) -> list[str]: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class BatchStats:
    """What a streaming run did, for the summary line and benchmarks."""

    rows: int
    seconds: float
    output: Path
    format: str

    @property
    def rows_per_second(self) -> float:
        """Rows through the model per second of the whole run (reading and writing included)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def file_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """``csv``, ``tsv``, ``jsonl`` (as :func:`rnnonnx.data.detect_format`) or ``txt`` (one text a line)."""
    if not fmt and [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"][-1:] == [".txt"]:
        return "txt"
    return detect_format(path, fmt)


def predict_proba(predictor: ProbaModel, texts: Sequence[str], bucketing: bool = True) -> np.ndarray:
    """Probabilities for ``texts`` in their order.

    With ``bucketing`` the predictor sees all the texts at once and groups them by token count;
    without, it gets consecutive slices of ``batch_size`` texts in input order (what a plain
    loop does), which is there to measure what bucketing saves.
    """
    if bucketing:
        return predictor.predict_proba(texts)
    size = predictor.batch_size
    parts = [predictor.predict_proba(texts[i : i + size]) for i in range(0, len(texts), size)]
    return np.concatenate(parts) if parts else np.empty((0, len(predictor.labels)), dtype=np.float32)


def _text_rows(records: Records, text_col: str) -> Iterator[tuple[str, Any]]:
    """``(text, record)`` for each record, the text checked as every reader checks it."""
    text_of = records.texts(text_col)
    for line, record in records:
        yield text_of(record, line), record


def iter_texts(path: str | os.PathLike, fmt: str | None = None, text_col: str = "text") -> Iterator[str]:
    """The texts of a CSV/TSV/JSONL file's text column, or of a ``.txt`` file's lines, streamed."""
    with open_records(path, file_format(path, fmt)) as records:
        yield from (text for text, _ in _text_rows(records, text_col))


class _Writer:
    """Writes records with the two prediction fields added, in the output's format."""

    def __init__(self, handle: IO[str], fmt: str, header: list[str] | None, names: tuple[str, str]) -> None:
        self.fmt, self.header, self.names = fmt, header, names
        self.handle = handle
        if fmt in ("csv", "tsv"):
            self.csv = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            self.csv.writerow([*(header or []), *names])

    def write(self, record: Any, label: str | list[str] | None, score: float, label_sep: str = ",") -> None:
        """``label``: a name, ``None`` (abstained: an empty cell, or null), or a multi-label set (a
        JSON list, or the names joined by ``label_sep`` in a CSV/TSV cell)."""
        if self.fmt in ("csv", "tsv"):
            cell = label_sep.join(label) if isinstance(label, list) else label or ""
            self.csv.writerow([*record, cell, f"{score:.{SCORE_DECIMALS}f}"])
            return
        fields = dict(zip(self.header, record)) if self.header is not None else dict(record)
        fields[self.names[0]], fields[self.names[1]] = label, round(score, SCORE_DECIMALS)
        self.handle.write(json.dumps(fields, ensure_ascii=False) + "\n")


class RowProgress(Progress):
    """Rows done, rows/s and how far through the input, on one line (terminals only)."""

    def update(self, rows: int, fraction: float | None = None) -> None:
        done = f"  {min(fraction, 1.0):6.1%} of input" if fraction is not None else ""
        self.show(f"{rows:,} rows  {rows / max(self.elapsed, 1e-9):,.0f} rows/s{done}")


def _names_for(header: list[str] | None, first: dict | None) -> tuple[str, str]:
    """``label``/``score``, or ``predicted_label``/``predicted_score`` if the input already has either."""
    taken = set(header or ()) | set(first or ())
    for names in OUTPUT_NAMES:
        if not taken & set(names):
            return names
    raise DataError(
        f"the input already has columns {', '.join(n for pair in OUTPUT_NAMES for n in pair)}; "
        f"rename one to make room for the predictions"
    )


def _open_output(handle: IO[bytes], path: Path) -> IO[str]:
    binary: IO[bytes] = gzip.GzipFile(fileobj=handle, mode="wb") if path.suffix.lower() == ".gz" else handle
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


class _Utf8Stream(io.TextIOBase):
    """Text written as UTF-8 to a binary stream this does not own (standard output stays open)."""

    def __init__(self, binary: IO[bytes]) -> None:
        super().__init__()
        self.binary = binary

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.binary.write(text.encode("utf-8"))
        return len(text)


@contextlib.contextmanager
def _output(path: Path) -> Iterator[IO[str]]:
    """Where predictions go: standard output for ``-`` (streamed as they come), else a file that
    appears complete or not at all (see :func:`rnnonnx.files.atomic_file` for what it may replace)."""
    if str(path) != STDOUT:
        with atomic_file(path, "wb") as handle, _open_output(handle, path) as text_out:
            yield text_out
        return
    sys.stdout.flush()
    try:
        yield _Utf8Stream(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        raise OutputError("standard output was closed before every prediction was written") from None


def predict_file(
    predictor: ProbaModel,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    fmt: str | None = None,
    text_col: str = "text",
    *,
    bucketing: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = False,
    min_score: float | None = None,
    label_sep: str = ",",
) -> BatchStats:
    """Classify every row of ``input_path`` into ``output_path``, streaming.

    The output has the input's format unless its extension names another (``.txt`` input needs
    a ``.csv``, ``.tsv`` or ``.jsonl`` output; JSONL cannot become CSV/TSV, its keys are not
    known in advance). Columns ``label`` and ``score`` are added (``predicted_label`` and
    ``predicted_score`` if the input has a column of either name). Memory holds one chunk of
    ``chunk_rows`` rows whatever the file size. ``-`` writes to standard output, in the input's
    format; the input file itself is never an output. ``min_score`` abstains as ``predict`` does
    (an empty label). A multi-label bundle's ``label`` is its set of labels, best first: a JSON
    list, or the names joined by ``label_sep`` in a CSV/TSV cell; ``score`` is the best label's.
    """
    if chunk_rows < 1:
        raise RnnonnxError("chunk_rows must be at least 1")
    if min_score is not None and not (isinstance(min_score, (int, float)) and 0.0 <= float(min_score) <= 1.0):
        raise RnnonnxError(f"min_score must be a probability between 0 and 1, not {min_score!r}")
    thresholds = getattr(predictor, "thresholds", None)
    if thresholds is not None and not label_sep:
        raise RnnonnxError("label_sep must not be empty: it joins a multi-label prediction's labels")
    clashing = [name for name in predictor.labels if thresholds is not None and label_sep in name]
    input_path, output_path = Path(input_path), Path(output_path)
    in_fmt = file_format(input_path, fmt)
    if str(output_path) == STDOUT:
        if in_fmt == "txt":
            raise DataError(
                "a .txt input has no format to keep on standard output; write to a .csv, .tsv or .jsonl file, or use --json"
            )
    elif output_path.exists() and input_path.exists() and os.path.samefile(input_path, output_path):
        raise OutputError(f"{output_path}: is the input file; write the predictions to another file")
    try:
        out_fmt = in_fmt if str(output_path) == STDOUT else detect_format(output_path)
    except DataError:
        if in_fmt == "txt":
            raise DataError(f"{output_path}: name the output .csv, .tsv or .jsonl (a .txt input has no format to keep)") from None
        out_fmt = in_fmt
    if in_fmt == "jsonl" and out_fmt != "jsonl":
        raise DataError(
            f"{output_path}: JSON Lines input can only be written as JSON Lines (its keys vary by line); name the output .jsonl"
        )
    if clashing and out_fmt in ("csv", "tsv"):
        raise RnnonnxError(
            f"label {clashing[0]!r} contains the separator {label_sep!r} that joins label sets; choose another --label-sep"
        )
    labels = predictor.labels
    started = time.perf_counter()
    bar = RowProgress(progress)
    source = open_records(input_path, in_fmt)
    rows = 0
    try:
        records = _text_rows(source, text_col)
        first = next(records, None)
        names = _names_for(source.header, first[1] if first is not None and source.header is None else None)
        chunk: list[tuple[str, Any]] = [first] if first is not None else []
        with _output(output_path) as text_out:
            writer = _Writer(text_out, out_fmt, source.header, names)

            def flush() -> None:
                proba = predict_proba(predictor, [text for text, _ in chunk], bucketing)
                if thresholds is not None:
                    for (_, record), prediction in zip(chunk, predictions_from_proba(proba, labels, None, min_score, thresholds)):
                        writer.write(record, prediction.labels, prediction.score, label_sep)
                else:
                    for (_, record), k, row in zip(chunk, proba.argmax(axis=1), proba):
                        score = float(row[k])
                        writer.write(record, labels[k] if min_score is None or score >= min_score else None, score)
                chunk.clear()

            for item in records:
                if source.header is None and not set(names).isdisjoint(item[1]):
                    raise DataError(
                        f"{input_path}: line {source.line} has a {names[0]!r} or {names[1]!r} key, unlike the first record; "
                        f"the predictions would overwrite it"
                    )
                chunk.append(item)
                if len(chunk) >= chunk_rows:
                    rows += len(chunk)
                    flush()
                    bar.update(rows, source.fraction())
            rows += len(chunk)
            flush()
            bar.update(rows, source.fraction())
    finally:
        bar.finish()
        source.close()
    return BatchStats(rows, time.perf_counter() - started, output_path, out_fmt)

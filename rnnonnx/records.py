"""The one reader of the files rnnonnx takes texts from: CSV, TSV, JSON Lines and plain text
(one text a line), each optionally gzip-compressed.

Training, evaluation, ``predict --input`` and the streamed ``predict --input --output`` all
read through :class:`Records`, so a file reads the same everywhere. It reads a line at a time
(memory holds one record, never the file), splits lines on ``\\n`` only (JSON Lines texts may
hold U+2028, U+2029 or U+0085 raw, as ``json.dumps(..., ensure_ascii=False)`` writes them), and
turns every problem with the file into a one-line :class:`~rnnonnx.errors.DataError` that names
the line. One record (a line, or a CSV/TSV row with its quoted line breaks) may be up to
``MAX_RECORD_MB`` MiB, or what the ``RNNONNX_MAX_RECORD_MB`` environment variable says.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DataError

MAX_RECORD_MB = 16
MAX_RECORD_ENV = "RNNONNX_MAX_RECORD_MB"
_MIB = 1 << 20
_LARGEST = 2**62  # what "no practical limit" means: csv and readline take C integers
_JSON_SPACE = " \t\r\n"
# Only a \u escape can put a lone surrogate into a string read from valid UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

Record = list | dict


def max_record_bytes() -> int:
    """The largest record to read, in bytes: ``RNNONNX_MAX_RECORD_MB`` MiB, else ``MAX_RECORD_MB``.

    A cap (rather than none) keeps a file with no line breaks, or a CSV quote left open, from
    filling memory before anything can be said about it.
    """
    value = os.environ.get(MAX_RECORD_ENV, "").strip()
    if not value:
        return MAX_RECORD_MB * _MIB
    try:
        mib = float(value)
    except ValueError:
        mib = math.nan
    if not (math.isfinite(mib) and mib > 0):
        raise DataError(f"{MAX_RECORD_ENV}={value!r}: give a positive number of MiB (default {MAX_RECORD_MB})")
    return max(1, min(int(mib * _MIB), _LARGEST))


def _size(limit: int) -> str:
    return f"{limit / _MIB:g} MiB" if limit >= _MIB // 16 else f"{limit:,} bytes"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _replace_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate (``"\\ud800"`` in JSON) replaced by U+FFFD.

    A lone surrogate is half a UTF-16 pair (a text cut inside an emoji, typically): not a
    character, so it cannot be written as UTF-8. As a tokenizer sees it, it is like U+FFFD
    (neither is a word character), so no prediction changes.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return record


# built once: json.loads with options builds a decoder per call, which doubles the reading time
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def parse_json_line(line: str, number: int, name: str) -> dict:
    """One JSON Lines record, which must be an object with no key twice; errors name the line.

    ``NaN``/``Infinity`` are refused (they are not JSON), and lone surrogates are replaced
    (see :func:`_replace_surrogates`).
    """
    try:
        record = _DECODER.decode(line)
        if not isinstance(record, dict):
            raise DataError(f"{name}: line {number} is not a JSON object (it is {kind(record)})")
        if _SURROGATE_ESCAPE.search(line):
            record = _replace_surrogates(record)
    except _DuplicateKey as exc:
        raise DataError(f"{name}: line {number} has the key {exc.args[0]!r} twice") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{name}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{name}: line {number} nests JSON arrays or objects too deeply") from None
    except ValueError as exc:  # NaN, or an integer of more digits than Python converts
        raise DataError(f"{name}: line {number} is not valid JSON ({_one_line(exc)})") from None
    return record


def kind(value: Any) -> str:
    """How a JSON value is named in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def label_text(value: object) -> str:
    """A label cell as a string: integers (also ``2.0``) in decimal, booleans as ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.strip() if isinstance(value, str) else str(value)


class Records:
    """The records of one file, streamed: iterate for ``(line, record)``, ``line`` being where the
    record starts; ``record`` is a list of strings (CSV/TSV, padded to the header; ``.txt``: the
    line) or a dict (JSON Lines). ``header`` holds the column names (``["text"]`` for ``.txt``,
    ``None`` for JSON Lines). Iterate once; close when done (or use ``with``).
    """

    def __init__(
        self,
        stream: IO[bytes],
        fmt: str,
        name: str,
        *,
        compressed: bool = False,
        size: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if fmt not in ("csv", "tsv", "jsonl", "txt"):
            raise DataError(f"unknown format {fmt!r}")
        self.fmt, self.name, self.size = fmt, name, size
        self.raw = stream
        self.stream: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
        self.limit = max_record_bytes() if max_bytes is None else max_bytes
        self.line = 0
        self.header: list[str] | None = ["text"] if fmt == "txt" else None
        self._record_start = 1
        self._record_bytes = 0
        self._eof = False
        self._lines = self._read_lines()
        if fmt in ("csv", "tsv"):
            # csv's limit is per process; it only has to stay above ours, which is checked per record
            csv.field_size_limit(max(csv.field_size_limit(), self.limit))
            self._csv = csv.reader(self._lines, delimiter="\t" if fmt == "tsv" else ",")
            self.header = self._read_header()

    def __enter__(self) -> "Records":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (and the gzip stream over it)."""
        self.stream.close()
        self.raw.close()

    def fraction(self) -> float | None:
        """How far through the file reading is (compressed bytes for ``.gz``), if its size is known."""
        try:
            return self.raw.tell() / self.size if self.size else None
        except (OSError, ValueError):
            return None

    def _read_lines(self) -> Iterator[str]:
        """Decoded lines (``\\n`` kept), checked against the record cap as they are read."""
        limit = self.limit
        while True:
            try:
                raw = self.stream.readline(limit + 1)
            except EOFError:
                raise DataError(f"{self.name}: the gzip data ends early, after line {self.line} (a truncated file?)") from None
            except gzip.BadGzipFile as exc:
                if self.line == 0 and str(exc).startswith("Not a gzipped file"):
                    raise DataError(f"{self.name}: not gzip-compressed, though its name ends in .gz") from None
                raise DataError(f"{self.name}: the gzip data is corrupt after line {self.line} ({_one_line(exc)})") from None
            except zlib.error as exc:
                raise DataError(f"{self.name}: the gzip data is corrupt after line {self.line} ({_one_line(exc)})") from None
            except OSError as exc:
                raise DataError(f"{self.name}: cannot read line {self.line + 1} ({exc.strerror or _one_line(exc)})") from None
            if not raw:
                self._eof = True
                return
            self.line += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                raise DataError(
                    f"{self.name}: line {self.line} is longer than {_size(limit)}, the most one record may hold; "
                    f"set {MAX_RECORD_ENV} to allow longer ones"
                )
            self._record_bytes += len(raw)
            if self._record_bytes > limit:
                raise DataError(
                    f"{self.name}: the row starting on line {self._record_start} is longer than {_size(limit)} "
                    f"(a quote left open?); set {MAX_RECORD_ENV} to allow longer records"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                hint = (
                    "it looks gzip-compressed: name it .gz"
                    if self.line == 1 and raw.startswith(b"\x1f\x8b")
                    else "save the file as UTF-8"
                )
                raise DataError(
                    f"{self.name}: line {self.line} is not valid UTF-8 (byte {raw[exc.start]:#04x}); {hint}"
                ) from None
            yield line[1:] if self.line == 1 and line.startswith("\ufeff") else line

    def _csv_row(self) -> list[str] | None:
        """The next non-blank CSV/TSV row, or ``None`` at the end of the file."""
        while True:
            self._record_start, self._record_bytes = self.line + 1, 0
            try:
                row = next(self._csv, None)
            except csv.Error as exc:
                message = str(exc)
                if message.startswith("new-line character seen in unquoted field"):
                    message = "a carriage return (\\r) inside an unquoted field; line breaks must be \\n or \\r\\n"
                raise DataError(f"{self.name}: line {self.line}: {message}") from None
            if row is None:
                return None
            if self._eof:
                raise DataError(f'{self.name}: the quoted field on line {self._record_start} is never closed (a stray ")')
            if row:
                return row

    def _read_header(self) -> list[str]:
        header = self._csv_row()
        if header is None:
            raise DataError(f"{self.name}: the file is empty (no header row)")
        seen: set[str] = set()
        for column in header:
            if column in seen:
                raise DataError(
                    f"{self.name}: line {self._record_start}: the header names the column {column!r} twice; rename one"
                )
            seen.add(column)
        return header

    def __iter__(self) -> Iterator[tuple[int, Record]]:
        if self.fmt in ("csv", "tsv"):
            width = len(self.header or ())
            while (row := self._csv_row()) is not None:
                if len(row) != width:
                    if len(row) > width:
                        raise DataError(f"{self.name}: line {self._record_start} has {len(row)} fields, the header has {width}")
                    row += [""] * (width - len(row))
                yield self._record_start, row
            return
        for line in self._lines:
            number, self._record_bytes = self.line, 0
            if self.fmt == "txt":
                yield number, [line.removesuffix("\n").removesuffix("\r")]
            elif line.strip(_JSON_SPACE):
                yield number, parse_json_line(line, number, self.name)

    def _require(self, column: str, option: str) -> None:
        """Refuse a CSV/TSV file whose header lacks ``column`` now, not at its first row."""
        if self.fmt in ("csv", "tsv") and column not in (self.header or ()):
            names = ", ".join(repr(c) for c in self.header or ()) or "none"
            raise DataError(f"{self.name}: no column {column!r} (the header has {names}); use {option}")

    def column(self, column: str, option: str) -> Callable[[Record, int], Any]:
        """A function ``(record, line) -> value`` of ``column`` (for ``.txt``, the line whatever the column)."""
        if self.fmt == "txt":
            return lambda record, line: record[0]
        if self.fmt != "jsonl":
            self._require(column, option)
            index = (self.header or []).index(column)
            return lambda record, line: record[index]

        def value(record: Record, line: int) -> Any:
            try:
                return record[column]
            except KeyError:
                keys = ", ".join(repr(k) for k in record) or "none"
                raise DataError(f"{self.name}: line {line} has no key {column!r} (it has {keys}); use {option}") from None

        return value

    def texts(self, column: str = "text") -> Callable[[Record, int], str]:
        """A function ``(record, line) -> text``: a string (``null`` or a missing cell reads as empty), nothing else."""
        value = self.column(column, "--text-col")

        def text(record: Record, line: int) -> str:
            found = value(record, line)
            if isinstance(found, str):
                return found
            if found is None:
                return ""
            raise DataError(f"{self.name}: line {line}: the value of {column!r} is {kind(found)}; a text must be a string")

        return text


def label_sets(records: Records, column: str = "label", sep: str | None = None) -> Callable[[Record, int], list[str]]:
    """A function ``(record, line) -> labels``: the list of a row's labels, for multi-label data.

    A JSON array holds one label per item (``[]``: the row has none); a string or number is one
    label, or with ``sep`` the parts between separators (an empty cell: no label). Without
    ``sep`` an empty label is an error, as for single-label data. Repeats are dropped, order kept.
    """
    value = records.column(column, "--label-col")

    def labels(record: Record, line: int) -> list[str]:
        found = value(record, line)
        if isinstance(found, dict):
            raise DataError(
                f"{records.name}: line {line}: the value of {column!r} is an object; give a label or a list of labels"
            )
        if isinstance(found, list):
            items = []
            for item in found:
                if isinstance(item, (list, dict)) or item is None:
                    raise DataError(f"{records.name}: line {line}: a label in the list of {column!r} is {kind(item)}")
                items.append(label_text(item))
        elif sep:
            items = label_text(found).split(sep)
            if items == [""]:
                return []
        else:
            items = [label_text(found)]
        names = [name.strip() for name in items]
        if "" in names:
            raise DataError(f"{records.name}: line {line} has an empty label")
        return list(dict.fromkeys(names))

    return labels


FASTTEXT_PREFIX = "__label__"
# fastText's readWord (src/dictionary.cc) splits a line on these bytes only, not on Unicode spaces.
_FASTTEXT_SPACE = re.compile("[ \t\n\r\v\f\0]+")


def fasttext_line(line: str, prefix: str = FASTTEXT_PREFIX) -> tuple[str, list[str]]:
    """``(text, labels)`` of one line of fastText's supervised format, by fastText's own rule
    (``Dictionary::getLine``): the line is split on ASCII whitespace, and every token that starts
    with ``prefix``, wherever it stands, is a label (named without the prefix); the other tokens,
    joined by single spaces, are the text. A label token that is the prefix alone is an error."""
    words, labels = [], []
    for token in _FASTTEXT_SPACE.split(line):
        if not token:
            continue
        if token.startswith(prefix):
            labels.append(token[len(prefix) :])
        else:
            words.append(token)
    if "" in labels:
        raise ValueError(f"a bare {prefix!r} with no label name")
    return " ".join(words), list(dict.fromkeys(labels))


def open_records(path: str | os.PathLike, fmt: str, *, max_bytes: int | None = None) -> Records:
    """Open a file for :class:`Records`, gunzipped when its name ends in ``.gz``."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open it ({exc.strerror or _one_line(exc)})") from None
    try:
        return Records(
            handle,
            fmt,
            str(path),
            compressed=path.suffix.lower() == ".gz",
            size=os.fstat(handle.fileno()).st_size or None,
            max_bytes=max_bytes,
        )
    except BaseException:
        handle.close()
        raise

"""Pretrained word vectors (``--vectors FILE``): the word2vec / GloVe / fastText ``.vec`` text format.

One word per line followed by its numbers, separated by single spaces; an optional first line
``COUNT DIM`` (word2vec and fastText write it, GloVe does not); optionally gzipped (recognised by
its content, whatever the name). Nothing is downloaded: the user brings the file.

A file word initialises the embedding row of the vocabulary token it *is* under the tokenizer's
own normalisation (:func:`rnnonnx.text.simple_lower`), so ``Paris`` in the file feeds the token
``paris`` that ``Paris`` in a text becomes. When several file words normalise to one token, the
first wins: these files list the most frequent form first. Only the rows of vocabulary words are
kept in memory, so a file of millions of words is read in one pass with little memory; every row
is checked for its shape, and the rows that are used for their numbers too.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .config import MAX_WIDTH
from .errors import RnnonnxError
from .text import PAD_ID, UNK_ID, simple_lower

# A line longer than this is not a word vector (16384 dimensions written with 30 characters each
# stay well below it): refused before it is held in memory.
MAX_LINE_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class WordVectors:
    """The rows of a vectors file that initialise a vocabulary: ``rows[i]`` is the token id whose
    embedding starts as ``values[i]``. ``file_rows`` counts the file's words, used or not."""

    path: str
    dim: int
    rows: np.ndarray
    values: np.ndarray
    vocab_words: int
    file_rows: int

    @property
    def found(self) -> int:
        """How many vocabulary words the file has a vector for."""
        return len(self.rows)

    @property
    def coverage(self) -> float:
        """The share of the vocabulary (padding and unknown left out) the file covers."""
        return self.found / max(1, self.vocab_words)

    def record(self) -> dict[str, Any]:
        """What ``metrics.json`` keeps under ``vectors``."""
        return {
            "file": self.path,
            "dim": self.dim,
            "file_words": self.file_rows,
            "found": self.found,
            "vocab": self.vocab_words,
            "coverage": round(self.coverage, 4),
        }

    def summary(self) -> str:
        """One progress line: the coverage."""
        return (
            f"vectors: {self.found}/{self.vocab_words} vocabulary words found in {self.path} "
            f"({100 * self.coverage:.1f}%, {self.dim} dimensions); the others start random"
        )


def read_vectors(path: str | Path, vocab: Sequence[str]) -> WordVectors:
    """The vectors of ``vocab``'s words in the file at ``path``; a malformed file is one clear error."""
    path = Path(path)
    index = {token: i for i, token in enumerate(vocab) if i not in (PAD_ID, UNK_ID)}
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
        with gzip.open(path, "rb") if compressed else open(path, "rb") as handle:
            return _read(handle, str(path), index)
    except FileNotFoundError:
        raise RnnonnxError(f"--vectors {path}: no such file") from None
    except IsADirectoryError:
        raise RnnonnxError(f"--vectors {path}: a directory, not a vectors file") from None
    except (OSError, EOFError) as exc:  # unreadable, or a truncated/corrupt gzip stream
        raise RnnonnxError(f"--vectors {path}: cannot read it ({type(exc).__name__}: {exc})") from None


def _read(handle: IO[bytes], name: str, index: dict[str, int]) -> WordVectors:
    dim, declared, number = 0, None, 0
    rows: list[int] = []
    values: list[np.ndarray] = []
    seen: set[int] = set()
    file_rows = 0
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            break
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise RnnonnxError(f"--vectors {name}: line {number} is longer than {MAX_LINE_BYTES >> 20} MiB; not a vectors file")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise RnnonnxError(f"--vectors {name}: line {number} is not UTF-8 text") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        parts = text.rstrip().split(" ")
        if parts == [""]:
            continue  # a blank line
        if not dim:
            if len(parts) == 2 and all(p.isdigit() for p in parts):  # the "COUNT DIM" header
                declared, dim = int(parts[0]), int(parts[1])
                if not 1 <= dim <= MAX_WIDTH:
                    raise RnnonnxError(f"--vectors {name}: the header gives {dim} dimensions; expected 1 to {MAX_WIDTH}")
                continue
            dim = len(parts) - 1
            if not 1 <= dim <= MAX_WIDTH:
                raise RnnonnxError(
                    f"--vectors {name}: line {number} is not a word followed by 1 to {MAX_WIDTH} numbers separated by spaces"
                )
        if len(parts) != dim + 1 or not parts[0]:
            raise RnnonnxError(
                f"--vectors {name}: line {number} has {len(parts) - 1} numbers after the word, expected {dim} (ragged rows)"
            )
        file_rows += 1
        token = index.get(simple_lower(parts[0]))
        if token is None or token in seen:
            continue
        try:
            with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
                vector = np.array([float(p) for p in parts[1:]], dtype=np.float32)
        except ValueError:
            bad = next(p for p in parts[1:] if not _is_number(p))
            raise RnnonnxError(
                f"--vectors {name}: line {number} ({parts[0]!r}) has {bad[:20]!r} where a number belongs"
            ) from None
        if not np.isfinite(vector).all():
            raise RnnonnxError(f"--vectors {name}: line {number} ({parts[0]!r}) has a value that is not a finite float32")
        seen.add(token)
        rows.append(token)
        values.append(vector)
    if not file_rows:
        raise RnnonnxError(f"--vectors {name}: no word vectors in it (an empty file?)")
    if declared is not None and declared != file_rows:
        raise RnnonnxError(f"--vectors {name}: the header announces {declared} words but the file has {file_rows} (truncated?)")
    matrix = np.stack(values) if values else np.zeros((0, dim), dtype=np.float32)
    return WordVectors(name, dim, np.array(rows, dtype=np.int64), matrix, len(index), file_rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

"""The one definition of tokenization, shared by training, export and prediction.

The rule, written so that any runtime can reimplement it (and `tokenizer.json` carries it). It is
pinned to the Unicode 14.0 tables committed in ``rnnonnx/_unicode_tables.py``, so it does not move
with whichever Python, C library, RE2 or JavaScript engine runs it:

1. Lowercase every code point by its Unicode 14.0 *simple* lowercase mapping, one code point at
   a time (``LOWER_MAP``). This is what ONNX Runtime's ``StringNormalizer`` (through the C
   library's ``towlower``; glibc 2.36 agrees at every code point) and JavaScript's
   per-character ``toLowerCase`` do; it differs from Python's ``str.lower()`` only for U+0130
   (``İ`` -> ``i``, not ``i̇``) and for Greek capital sigma, which always becomes ``σ`` (no
   final-sigma rule).
2. Word characters are the code points of Unicode 14.0 general category L* or N*, plus ``_``
   (``WORD_RANGES``; Python 3.11's ``\\w`` exactly). ``token_pattern`` spells this class out code
   point by code point instead of writing ``[\\p{L}\\p{N}_]``, because engines built on newer
   Unicode (RE2 in ONNX Runtime 1.30 knows 5,010 more letters and digits) would split differently.
3. The ``word`` analyzer yields every maximal run of two or more word characters (scikit-learn's
   default ``(?u)\\b\\w\\w+\\b``); the ``char`` analyzer yields every word character on its own,
   for languages written without spaces, and Korean.
4. Tokens map to ids through the vocabulary: 0 is padding, 1 is an unknown token; a text keeps
   its first ``max_len`` tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from ._unicode_tables import LOWER_MAP, UNICODE_VERSION, WORD_RANGES
from .config import ANALYZERS, AUTO_CHAR_SHARE

TOKENIZER_FORMAT = "rnnonnx-tokenizer/1"
PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"


def _word_ranges() -> list[tuple[int, int]]:
    """``WORD_RANGES`` as inclusive ``(first, last)`` code point pairs."""
    pairs = []
    for item in WORD_RANGES.split():
        first, _, last = item.partition("-")
        pairs.append((int(first, 16), int(last or first, 16)))
    return pairs


def _char_class(ranges: list[tuple[int, int]]) -> str:
    """A regex character class of literal code points: the one syntax that Python ``re``, RE2
    and JavaScript (``u`` flag) all read the same way (no ``\\p{..}``, no escapes)."""
    parts = [chr(lo) + ("" if hi == lo else chr(hi) if hi == lo + 1 else "-" + chr(hi)) for lo, hi in ranges]
    return "[" + "".join(parts) + "]"


@cache
def portable_pattern(analyzer: str) -> str:
    """The token regex of the rule, spelled with literal code points (for ONNX Runtime's RE2 and
    JavaScript). Built on first use: a one-sentence prediction on the text-in graph never needs it."""
    word_class = _char_class(_word_ranges())
    return word_class + "{2,}" if analyzer == "word" else word_class


# When this Python's own Unicode tables are the rule's, its built-ins give the same answers
# (tests/test_textgraph.py checks every code point) three times faster than the spelled-out class.
NATIVE_UNICODE = unicodedata.unidata_version == UNICODE_VERSION


@cache
def _python_pattern(analyzer: str) -> re.Pattern[str]:
    if NATIVE_UNICODE:
        return re.compile(r"\w{2,}" if analyzer == "word" else r"\w")
    return re.compile(portable_pattern(analyzer))


# Scripts that ``--analyzer auto`` reads by character. Those written without spaces between words:
# Thai, Lao, Myanmar, Khmer, Hiragana and Katakana (with the phonetic extensions and the halfwidth
# forms), and Han ideographs (with the extensions and the compatibility forms); in them a run of word
# characters is a phrase or a clause, so the ``word`` analyzer would make nearly every token unique.
# And Hangul (syllables and jamo, with the halfwidth forms): Korean is spaced, but each spaced word
# carries its particles and endings (게임입니다, "is a game"), so spaced words are rare where
# syllables recur; on Korean package descriptions reading by syllable scored 3 to 6 validation points
# higher than by spaced word (benchmarks/recipe.md).
CHAR_SCRIPT_RANGES = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1100, 0x11FF),
    (0x1780, 0x17FF),
    (0x3040, 0x30FF),
    (0x3130, 0x318F),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7FF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFFDC),
    (0x20000, 0x3134F),
)
# How much text ``choose_analyzer`` reads: enough to tell a language, little time on large files.
ANALYZER_SAMPLE_CHARS = 1_000_000


def char_script_share(texts: Iterable[str], limit: int = ANALYZER_SAMPLE_CHARS) -> float:
    """The share of the word characters of ``texts`` (their first ``limit`` characters) that belong
    to scripts read by character (:data:`CHAR_SCRIPT_RANGES`); 0 when there are none."""
    sample, size = [], 0
    for text in texts:
        if size >= limit:
            break
        sample.append(text[: limit - size])
        size += len(sample[-1])
    words = "".join(_python_pattern("char").findall("\n".join(sample)))
    return len(_char_script_pattern().findall(words)) / len(words) if words else 0.0


@cache
def _char_script_pattern() -> re.Pattern[str]:
    """One character of :data:`CHAR_SCRIPT_RANGES`; built on first use (only training needs it)."""
    return re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in CHAR_SCRIPT_RANGES) + "]")


def choose_analyzer(texts: Iterable[str]) -> tuple[str, float]:
    """``--analyzer auto``: ``char`` when at least ``AUTO_CHAR_SHARE`` of the texts' word characters
    are in scripts read by character (:data:`CHAR_SCRIPT_RANGES`), else ``word``; and that share."""
    share = char_script_share(texts)
    return ("char" if share >= AUTO_CHAR_SHARE else "word"), share


# Code points whose full lowercase mapping (Python's) is not their simple one.
_SIMPLE_LOWER_EXCEPTIONS = {"\u0130": "i"}
_NEEDS_SLOW_LOWER = re.compile("[\u0130\u03a3]")


@lru_cache(maxsize=1)
def lower_table() -> dict[int, int]:
    """``LOWER_MAP`` as a ``str.translate`` table."""
    return {int(a, 16): int(b, 16) for a, b in (pair.split(":") for pair in LOWER_MAP.split())}


def simple_lower(text: str) -> str:
    """Lowercase code point by code point (Unicode 14.0 simple mapping), as ONNX Runtime does."""
    if not NATIVE_UNICODE:
        return text.translate(lower_table())
    if not _NEEDS_SLOW_LOWER.search(text):
        return text.lower()
    return "".join(_SIMPLE_LOWER_EXCEPTIONS.get(ch) or ch.lower() for ch in text)


def analyze(text: str, analyzer: str = "word", lowercase: bool = True) -> list[str]:
    """Split one text into tokens by the written rule above (no vocabulary, no truncation)."""
    if lowercase:
        text = simple_lower(text)
    return _python_pattern(analyzer).findall(text)


def token_spans(text: str, analyzer: str = "word", lowercase: bool = True) -> list[tuple[str, int, int]]:
    """``analyze``'s tokens with their ``[start, end)`` character offsets in ``text`` itself.

    The rule lowercases one code point into one code point, so offsets in the lowercased text
    are offsets in the original (what ``rnnonnx explain`` needs to colour the user's own text).
    """
    lowered = simple_lower(text) if lowercase else text
    if len(lowered) != len(text):  # cannot happen with a simple mapping; guards a future rule change
        raise ValueError("lowercasing changed the text's length; token offsets would not match")
    return [(m.group(), m.start(), m.end()) for m in _python_pattern(analyzer).finditer(lowered)]


@dataclass(frozen=True)
class TokenizerSpec:
    """How raw text becomes tokens; stored in every run and bundle."""

    analyzer: str = "word"
    lowercase: bool = True
    max_len: int = 64

    def __post_init__(self) -> None:
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"analyzer must be one of {ANALYZERS}, not {self.analyzer!r}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be at least 1, not {self.max_len}")

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text, before vocabulary lookup and truncation."""
        return analyze(text, self.analyzer, self.lowercase)

    def estimated_steps(self, text: str) -> int:
        """About how many tokens ``text`` gives, from 1 to ``max_len``, without tokenizing it: its
        words, counted as spaces and line breaks plus one (``word``), or its characters other than
        spaces (``char``). The text-in graph tokenizes inside ONNX Runtime, so this is what groups
        texts of similar token counts into one model call, where padding is work; results never
        depend on it. On the built-in sentences, in calls of up to 64, padding adds 15% to the steps
        grouped so, 25% grouped by characters and 10% by exact tokens, which cost ten times as much
        to count (``benchmarks/call_grouping.py``)."""
        if self.analyzer == "word":
            count = text.count(" ") + text.count("\n") + 1
        else:
            count = len(text) - text.count(" ")
        return min(max(1, count), self.max_len)


def pad_ids(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Right-pad id lists with ``PAD_ID`` into an int64 matrix of at least one column.

    (A zero-width batch would crash ONNX Runtime's recurrent kernels; an all-padding row is
    read by the model as one padding token.)
    """
    width = max([1] + [len(r) for r in rows])
    out = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


class Tokenizer:
    """A spec plus a vocabulary: turns texts into padded int64 id matrices."""

    def __init__(self, spec: TokenizerSpec, vocab: Sequence[str]) -> None:
        if len(vocab) < 2 or vocab[PAD_ID] != PAD_TOKEN or vocab[UNK_ID] != UNK_TOKEN:
            raise ValueError(f"vocabulary must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}")
        self.spec = spec
        self.vocab = list(vocab)
        self._index = {token: i for i, token in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise ValueError("vocabulary has duplicate tokens")

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, truncated to ``max_len`` (possibly empty)."""
        get = self._index.get
        return [get(t, UNK_ID) for t in self.spec.tokens(text)[: self.spec.max_len]]

    def encode_batch(self, texts: Iterable[str]) -> np.ndarray:
        """A ``[batch, seq]`` int64 matrix, right-padded with 0; always at least one column."""
        return pad_ids([self.encode(t) for t in texts])

    def to_dict(self) -> dict:
        """The JSON form written as ``tokenizer.json``: the spec, the portable rule and the vocabulary."""
        return {
            "format": TOKENIZER_FORMAT,
            "analyzer": self.spec.analyzer,
            "lowercase": "unicode-simple" if self.spec.lowercase else "none",
            "token_pattern": portable_pattern(self.spec.analyzer),
            "max_len": self.spec.max_len,
            "pad_id": PAD_ID,
            "unk_id": UNK_ID,
            "vocab": self.vocab,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Tokenizer":
        """Read the JSON form; refuses a format this version does not know."""
        if data.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"unknown tokenizer format {data.get('format')!r}")
        spec = TokenizerSpec(
            analyzer=data["analyzer"],
            lowercase=data["lowercase"] == "unicode-simple",
            max_len=int(data["max_len"]),
        )
        return cls(spec, data["vocab"])

"""Reading labelled texts (CSV, TSV, JSON Lines, or the built-in dataset) and splitting them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import DataError
from .records import FASTTEXT_PREFIX, Records, fasttext_line, label_sets, open_records

FORMATS = ("csv", "tsv", "jsonl", "fasttext")
# The two kinds of task: one label per text (softmax), or a set of labels per text (sigmoids).
MULTI_CLASS, MULTI_LABEL = "multi-class", "multi-label"
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
BUILTIN_NAME = "movie_sentences"
BUILTIN_CREDIT = (
    "Movie-review sentences of Pang & Lee (2005) as re-rated in Hutto & Gilbert, "
    "'VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text', "
    "ICWSM 2014 (vaderSentiment 3.3.2, MIT license); label = sign of the mean rating."
)


@dataclass
class LabelledTexts:
    """Texts with their labels (as strings), and what was skipped while reading them.

    Multi-label data (see :func:`collapse`) has ``label_sets``, each text's list of labels, and
    ``labels`` empty; multi-class data has one label per text in ``labels`` and no ``label_sets``.
    """

    texts: list[str]
    labels: list[str]
    source: str
    skipped_empty: int = 0
    warnings: list[str] = field(default_factory=list)
    label_sets: list[list[str]] | None = None

    @property
    def task(self) -> str:
        """``multi-label`` or ``multi-class``."""
        return MULTI_LABEL if self.label_sets is not None else MULTI_CLASS


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The file format: ``fmt`` if given, else from the extension (``.gz`` is looked through)."""
    if fmt:
        if fmt not in FORMATS:
            raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise DataError(f"{path}: cannot tell the format from the extension; pass --format csv|tsv|jsonl")


def parse_records(
    records: Records, text_col: str, label_col: str | None, label_sep: str | None = None, multi_label: bool = False
) -> LabelledTexts:
    """Pick the text and label columns out of a file's records, with clear errors; labels may be
    lists (see :func:`rnnonnx.records.label_sets` and :func:`collapse`)."""
    text_of = records.texts(text_col)
    label_of = label_sets(records, label_col, label_sep) if label_col is not None else None
    texts: list[str] = []
    sets: list[list[str]] = []
    skipped = 0
    seen_any = False
    for number, record in records:
        seen_any = True
        body = text_of(record, number)
        if label_of is not None:
            found = label_of(record, number)
        if not body.strip():
            skipped += 1
            continue
        texts.append(body)
        if label_of is not None:
            sets.append(found)
    return _finish(records, seen_any, texts, sets, skipped, label_col is not None, multi_label)


def parse_fasttext(records: Records, prefix: str = FASTTEXT_PREFIX, multi_label: bool = False) -> LabelledTexts:
    """Texts and labels of a file in fastText's supervised format (see
    :func:`rnnonnx.records.fasttext_line`); a line without a label is a text with no labels."""
    texts: list[str] = []
    sets: list[list[str]] = []
    skipped = 0
    seen_any = False
    for number, (line,) in records:
        seen_any = True
        try:
            body, found = fasttext_line(line, prefix)
        except ValueError as exc:
            raise DataError(f"{records.name}: line {number}: {exc}") from None
        if not body:
            skipped += 1
            continue
        texts.append(body)
        sets.append(found)
    return _finish(records, seen_any, texts, sets, skipped, True, multi_label)


def _finish(
    records: Records, seen_any: bool, texts: list[str], sets: list[list[str]], skipped: int, labelled: bool, multi_label: bool
) -> LabelledTexts:
    if not seen_any:
        raise DataError(f"{records.name}: the file is empty" + (" (no rows under a header)" if records.header else ""))
    if not texts:
        raise DataError(f"{records.name}: every row has an empty text")
    result = LabelledTexts(texts, [], records.name, skipped)
    if labelled:
        collapse(result, sets, multi_label)
    if skipped:
        result.warnings.append(f"{records.name}: skipped {skipped} row(s) with empty text")
    return result


def collapse(data: LabelledTexts, sets: list[list[str]], multi_label: bool = False) -> None:
    """Set ``data``'s labels from each text's list of labels: multi-label (``label_sets``) when
    forced or when any text has other than exactly one label, else multi-class (``labels``)."""
    if multi_label or any(len(found) != 1 for found in sets):
        data.labels, data.label_sets = [], sets
    else:
        data.labels, data.label_sets = [found[0] for found in sets], None


def read_file(
    path: str | Path,
    fmt: str | None = None,
    text_col: str = "text",
    label_col: str | None = "label",
    label_sep: str | None = None,
    multi_label: bool = False,
) -> LabelledTexts:
    """Read a labelled (or, with ``label_col=None``, unlabelled) file of texts. ``label_sep`` splits
    a CSV/TSV/JSONL label string into several labels; ``multi_label`` makes the data multi-label
    even when every text has exactly one label. fastText files (``.txt``) are always labelled."""
    path = Path(path)
    # labelled .txt files are fastText's (unlabelled ones, one text a line, are read by rnnonnx.batch)
    fmt = "fasttext" if not fmt and [s.lower() for s in path.suffixes if s.lower() != ".gz"][-1:] == [".txt"] else fmt
    fmt = detect_format(path, fmt)
    if label_sep is not None and (fmt == "fasttext" or not label_sep):
        raise DataError(
            "--label-sep applies to CSV, TSV and JSON Lines labels (fastText files name each label apart)"
            if label_sep
            else "--label-sep must not be empty"
        )
    if fmt == "fasttext":
        if label_col is None:
            raise DataError(f"{path}: a fastText file holds labelled texts; read unlabelled texts from a .txt of one text a line")
        with open_records(path, "txt") as records:
            return parse_fasttext(records, multi_label=multi_label)
    with open_records(path, fmt) as records:
        return parse_records(records, text_col, label_col, label_sep, multi_label)


def read_builtin() -> LabelledTexts:
    """The dataset shipped inside the package (see ``BUILTIN_CREDIT``)."""
    with resources.files(__package__).joinpath("data", f"{BUILTIN_NAME}.csv.gz").open("rb") as handle:
        with Records(handle, "csv", f"built-in:{BUILTIN_NAME}", compressed=True) as records:
            return parse_records(records, "text", "label")


def sorted_labels(labels: list[str]) -> list[str]:
    """Distinct labels in a stable order: numerically if all are integers, else alphabetically."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def check_classes(data: LabelledTexts) -> list[str]:
    """The label names, refusing data with a single class."""
    names = sorted_labels(data.labels)
    if len(names) < 2:
        raise DataError(f"{data.source}: only one class ({names[0]!r}); a classifier needs at least two")
    return names


@dataclass
class Split:
    """Row indices of each part; ``validation_is_train`` when data was too small to hold any out;
    ``rare`` the classes too small to appear in every part, kept in training only."""

    train: list[int]
    validation: list[int]
    test: list[int]
    validation_is_train: bool = False
    rare: dict[str, int] = field(default_factory=dict)


# A class needs a row for training, one for validation and one for test to be stratified.
MIN_CLASS_ROWS = 3


def split(labels: list[str], validation: float, test: float, seed: int) -> Split:
    """A stratified train/validation/test split that degrades gracefully on tiny data.

    Classes with fewer than ``MIN_CLASS_ROWS`` rows cannot be in every part: their rows go to
    training only (the returned ``rare`` names them), and the other classes are split as usual,
    so one odd row does not cost the whole data set its held-out parts. A part is held out only
    if it can hold every other class and every class keeps a training example; otherwise the test
    part is dropped and validation reuses the training rows.
    """
    from sklearn.model_selection import train_test_split

    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    rare = {label: n for label, n in counts.items() if n < MIN_CLASS_ROWS}
    if len(rare) > len(counts) - 2:  # fewer than two classes left to stratify: the old behaviour
        rare = {}
    kept_aside = [i for i, label in enumerate(labels) if label in rare]
    indices = [i for i, label in enumerate(labels) if label not in rare]
    n_classes = len(counts) - len(rare)

    def carve(pool: list[int], fraction: float) -> tuple[list[int], list[int]] | None:
        size = round(len(pool) * fraction)
        pool_counts: dict[str, int] = {}
        for i in pool:
            pool_counts[labels[i]] = pool_counts.get(labels[i], 0) + 1
        if fraction <= 0 or size < n_classes or len(pool) - size < n_classes or min(pool_counts.values()) < 2:
            return None
        kept, held = train_test_split(pool, test_size=size, random_state=seed, stratify=[labels[i] for i in pool])
        return sorted(kept), sorted(held)

    carved = carve(indices, test)
    rest, test_idx = carved if carved else (indices, [])
    carved = carve(rest, validation / max(1e-9, 1 - (test if test_idx else 0)))
    if carved:
        return Split(sorted(carved[0] + kept_aside), carved[1], test_idx, rare=rare)
    train = sorted(rest + kept_aside)
    return Split(train, list(train), test_idx, validation_is_train=True, rare=rare)


def warn(message: str) -> None:
    """Warnings go to stderr, so stdout stays clean for ``--json``."""
    print(f"warning: {message}", file=sys.stderr)

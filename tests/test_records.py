"""The one reader of data files, on every path that uses it (training's read_file with and
without labels, the streamed texts of predict/bench, and predict --output): random and
damaged files give rows or a one-line RnnonnxError, never another exception; files written by
csv and json read back exactly; and the record cap, line numbers and gzip errors."""

from __future__ import annotations

import atexit
import csv
import gzip
import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from rnnonnx.batch import iter_texts, predict_file
from rnnonnx.data import read_file
from rnnonnx.errors import DataError, RnnonnxError
from rnnonnx.records import MAX_RECORD_ENV, MAX_RECORD_MB, Records, fasttext_line, max_record_bytes, open_records

# Hypothesis caches what it learns under ./.hypothesis; keep the checkout clean.
_HOME = tempfile.mkdtemp(prefix="rnnonnx-hypothesis-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
set_hypothesis_home_dir(_HOME)
FAST = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
DEEP = settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Fixed:
    """A predictor stand-in: what predict --output does with the rows, without a model."""

    batch_size = 4
    labels = ["neg", "pos"]

    def predict_proba(self, texts):
        return np.tile(np.float32([0.25, 0.75]), (len(texts), 1))


def one_line(exc: RnnonnxError) -> str:
    message = str(exc)
    assert message and len(message.splitlines()) == 1 and "\r" not in message, repr(message)
    return message


def read_every_way(path: Path) -> dict[str, object]:
    """Each reader path's rows, or the RnnonnxError it raised (any other exception fails the test)."""
    out = path.parent / ("out" + (".csv" if ".txt" in path.suffixes else "".join(path.suffixes)))
    ways = {"streamed": lambda: list(iter_texts(path)), "output": lambda: predict_file(Fixed(), path, out, chunk_rows=3)}
    if ".txt" not in path.suffixes:
        ways["labelled"] = lambda: read_file(path)
        ways["unlabelled"] = lambda: read_file(path, label_col=None)
        ways["label sets"] = lambda: read_file(path, label_sep="|", multi_label=True)
    else:
        ways["fasttext"] = lambda: read_file(path)
    outcomes: dict[str, object] = {}
    for way, call in ways.items():
        try:
            outcomes[way] = call()
        except RnnonnxError as exc:
            one_line(exc)
            outcomes[way] = exc
    return outcomes


def check_consistent(outcomes: dict[str, object]) -> None:
    """Every path read the same records: the same texts, or the same error."""
    streamed, output = outcomes["streamed"], outcomes["output"]
    if not isinstance(output, RnnonnxError):  # (it has refusals of its own: keys the predictions would overwrite)
        assert not isinstance(streamed, RnnonnxError) and output.rows == len(streamed)
    if "unlabelled" not in outcomes:
        return
    unlabelled, labelled = outcomes["unlabelled"], outcomes["labelled"]
    if isinstance(streamed, RnnonnxError):
        assert isinstance(unlabelled, RnnonnxError) and str(unlabelled) == str(streamed)
    elif any(t.strip() for t in streamed):
        assert unlabelled.texts == [t for t in streamed if t.strip()]
    else:
        assert isinstance(unlabelled, RnnonnxError)
    if not isinstance(labelled, RnnonnxError):
        assert not isinstance(unlabelled, RnnonnxError) and labelled.texts == unlabelled.texts


def read_bytes_every_way(content: bytes, name: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        outcomes = read_every_way(path)
        check_consistent(outcomes)
        return outcomes


TOKENS = [
    "text",
    "label",
    "a",
    "b",
    "é",
    "日本",
    " ",
    ",",
    "\t",
    '"',
    '""',
    "\n",
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\u0085",
    "\ufeff",
    "\x00",
    "{",
    "}",
    "[",
    "]",
    ":",
    '"text"',
    '"label"',
    '"score"',
    "null",
    "1",
    "2.0",
    "-0",
    "true",
    "NaN",
    "1e999",
    "\\",
    "\\ud800",
    "\\udc00",
    "\\n",
    "\\u00e9",
    "\\u2028",
    '{"text": ',
    '"label": "x"}',
]
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x1f\x8b", b"\xef\xbb\xbf"]
HEADERS = [b"", b"text,label\n", b"text\tlabel\n", b"label,text,text\n", b"id,text,label\r\n", b"text\n"]
soup = st.lists(st.one_of(st.sampled_from(TOKENS).map(str.encode), st.sampled_from(BAD_BYTES)), max_size=60).map(b"".join)
chars = st.one_of(st.characters(), st.sampled_from(["\n", "\r", "\u2028", "\u2029", "\x85", '"', ",", "\t", "\ud800", "\udfff"]))


def strings(max_size: int) -> st.SearchStrategy[str]:
    """Strings that may hold lone surrogates (``st.text`` leaves them out)."""
    return st.lists(chars, max_size=max_size).map("".join)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings(8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings(5), inner, max_size=3),
    max_leaves=6,
)
json_record = st.fixed_dictionaries(
    {}, optional={"text": strings(12) | json_value, "label": json_value, "id": json_value, "score": json_value}
)


@st.composite
def jsonl_bytes(draw) -> bytes:
    """JSON Lines as json.dumps writes them (ASCII-escaped or raw UTF-8; lone surrogates raw only
    as the bytes a UTF-8 encoder would refuse), with blank lines and CRLF now and then."""
    lines = []
    for record in draw(st.lists(json_record | json_value, max_size=6)):
        ascii_only = draw(st.booleans())
        lines.append(json.dumps(record, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
    ending = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
    return ending.join(lines) + draw(st.sampled_from([b"", ending]))


random_file = st.one_of(st.binary(max_size=300), st.builds(bytes.__add__, st.sampled_from(HEADERS), soup), jsonl_bytes())


@FAST
@given(content=random_file, suffix=st.sampled_from(SUFFIXES))
def test_random_files_give_rows_or_one_line_errors(content, suffix):
    read_bytes_every_way(content, "data" + suffix)


@FAST
@given(content=random_file, suffix=st.sampled_from(SUFFIXES), cut=st.floats(0, 1), flip=st.integers(0, 255))
def test_damaged_gzip_gives_rows_or_one_line_errors(content, suffix, cut, flip):
    packed = bytearray(gzip.compress(content))
    if flip:
        packed[int(cut * (len(packed) - 1))] ^= flip
    else:
        del packed[int(cut * len(packed)) :]
    read_bytes_every_way(bytes(packed), "data" + suffix + ".gz")


@pytest.mark.slow
@DEEP
@given(content=random_file, suffix=st.sampled_from(SUFFIXES), gz=st.booleans(), cut=st.floats(0, 1))
def test_random_files_deeper(content, suffix, gz, cut):
    if gz:
        content = gzip.compress(content)[: max(1, int(cut * len(content) * 2))]
    read_bytes_every_way(content, "data" + suffix + (".gz" if gz else ""))


text_chars = st.characters(exclude_categories=["Cs"]) | st.sampled_from(["\n", "\r", "\u2028", "\u2029", "\x85", '"', ",", "\t"])
label = st.text(text_chars, min_size=1, max_size=6).filter(str.strip)


def write(path: Path, rows: list[tuple[str, str]], fmt: str, ascii_only: bool, crlf: bool) -> None:
    buffer = io.StringIO(newline="")
    if fmt == "jsonl":
        for text, tag in rows:
            buffer.write(json.dumps({"text": text, "label": tag}, ensure_ascii=ascii_only) + ("\r\n" if crlf else "\n"))
    else:
        # csv quotes a lone \r only when it is part of the line terminator; a \r outside quotes is
        # refused (test_csv_errors_name_the_right_line), as by csv.reader on a file opened with newline=""
        quoting = csv.QUOTE_ALL if not crlf and any("\r" in cell for row in rows for cell in row) else csv.QUOTE_MINIMAL
        writer = csv.writer(
            buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\r\n" if crlf else "\n", quoting=quoting
        )
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    raw = buffer.getvalue().encode("utf-8", "surrogatepass" if ascii_only else "strict")
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@FAST
@given(
    rows=st.lists(st.tuples(st.text(text_chars, max_size=20), label), min_size=1, max_size=8),
    fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
    gz=st.booleans(),
    ascii_only=st.booleans(),
    crlf=st.booleans(),
)
def test_files_written_by_csv_and_json_read_back_exactly(rows, fmt, gz, ascii_only, crlf):
    """Texts with quotes, delimiters, CR, LF, U+2028, U+2029 and U+0085 survive every path."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (f"data.{fmt}" + (".gz" if gz else ""))
        write(path, rows, fmt, ascii_only, crlf)
        assert list(iter_texts(path)) == [text for text, _ in rows]
        kept = [(text, tag) for text, tag in rows if text.strip()]
        if not kept:
            with pytest.raises(DataError, match="every row has an empty text"):
                read_file(path)
            return
        data = read_file(path)
        assert data.texts == [text for text, _ in kept] and data.labels == [tag.strip() for _, tag in kept]
        stats = predict_file(Fixed(), path, path.with_name("out" + "".join(path.suffixes)))
        assert stats.rows == len(rows)


@FAST
@given(texts=st.lists(strings(12), min_size=1, max_size=6))
def test_lone_surrogates_in_jsonl_read_as_replacement_characters(texts):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts), encoding="ascii")
        # (a high surrogate next to a low one is a pair again once written as JSON escapes)
        expected = [LONE_SURROGATE.sub("\ufffd", json.loads(json.dumps(t))) for t in texts]
        assert list(iter_texts(path)) == expected
        out = path.with_name("out.jsonl")
        predict_file(Fixed(), path, out)
        assert [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").split("\n")[:-1]] == expected


def test_jsonl_splits_lines_at_newline_only(tmp_path):
    texts = ["one\u2028two", "three\u2029four", "five\x85six", "seven\x0bx\x0cy\x1cz\x1dw\x1ev"]
    raw = "".join(json.dumps({"text": t, "label": str(i % 2)}, ensure_ascii=False) + "\n" for i, t in enumerate(texts))
    (tmp_path / "raw.jsonl").write_text(raw, encoding="utf-8")
    assert read_file(tmp_path / "raw.jsonl").texts == texts
    assert list(iter_texts(tmp_path / "raw.jsonl")) == texts
    (tmp_path / "lines.txt").write_text("a\u2028b\nc\x85d\r\ne\n", encoding="utf-8")
    assert list(iter_texts(tmp_path / "lines.txt")) == ["a\u2028b", "c\x85d", "e"]


def test_record_cap_default_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(MAX_RECORD_ENV, raising=False)
    assert max_record_bytes() == MAX_RECORD_MB * 2**20
    monkeypatch.setenv(MAX_RECORD_ENV, "0.5")
    assert max_record_bytes() == 2**19
    monkeypatch.setenv(MAX_RECORD_ENV, "1e30")
    assert max_record_bytes() == 2**62
    (tmp_path / "in.csv").write_text("text\nfine\n")
    assert list(iter_texts(tmp_path / "in.csv")) == ["fine"]  # csv's own limit is a C long
    for bad in ("0", "-1", "lots", "nan", "inf"):
        monkeypatch.setenv(MAX_RECORD_ENV, bad)
        with pytest.raises(DataError, match=f"{MAX_RECORD_ENV}='{bad}': give a positive number of MiB"):
            max_record_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".txt"])
def test_records_past_the_cap_are_refused_on_their_line(tmp_path, monkeypatch, suffix):
    monkeypatch.setenv(MAX_RECORD_ENV, "0.25")
    long = "x" * 300_000
    path = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": "a"}) + "\n" for t in ["ok", "fine", long]))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(("" if suffix == ".txt" else f"text{sep}label\n") + f"ok{sep}a\nfine{sep}b\n{long}{sep}a\n")
    line = 3 if suffix in (".jsonl", ".txt") else 4
    with pytest.raises(DataError, match=rf"line {line} is longer than 0.25 MiB.*set {MAX_RECORD_ENV}"):
        list(iter_texts(path))


def test_a_quoted_row_past_the_cap_names_its_first_line(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_RECORD_ENV, "0.25")
    path = tmp_path / "in.csv"
    path.write_text('text,label\nok,a\n"' + "many short lines\n" * 20_000 + '",b\n')
    with pytest.raises(DataError, match=r"the row starting on line 3 is longer than 0.25 MiB \(a quote left open\?\)"):
        read_file(path)


def test_fields_far_past_pythons_csv_limit_read(tmp_path):
    """Python's csv stops at 131,072 characters a field by default; rnnonnx reads up to its own cap."""
    body = "word " * 100_000
    for fmt, sep in (("csv", ","), ("tsv", "\t")):
        path = tmp_path / f"big.{fmt}"
        path.write_text(f'text{sep}label\nshort{sep}a\n"{body}"{sep}b\n', encoding="utf-8")
        assert read_file(path).texts == ["short", body]
        assert list(iter_texts(path)) == ["short", body]


def test_csv_errors_name_the_right_line(tmp_path):
    (tmp_path / "cr.csv").write_bytes(b"text,label\na,b\nc,d\nbad\rcell,x\n")
    with pytest.raises(DataError, match=r"cr.csv: line 4: a carriage return"):
        read_file(tmp_path / "cr.csv")
    (tmp_path / "open.csv").write_text('text,label\na,b\n"never closed,c\nd,e\n')
    with pytest.raises(DataError, match=r'the quoted field on line 3 is never closed \(a stray "\)'):
        read_file(tmp_path / "open.csv")
    (tmp_path / "wide.csv").write_text('text,label\na,b\n"multi\nline",c,extra\n')
    with pytest.raises(DataError, match="line 3 has 3 fields, the header has 2"):
        read_file(tmp_path / "wide.csv")


def test_rows_report_the_line_they_start_on(tmp_path):
    (tmp_path / "in.csv").write_text('text,label\n\n"two\nlines",a\nthree,b\n')
    with open_records(tmp_path / "in.csv", "csv") as records:
        assert [(line, row) for line, row in records] == [(3, ["two\nlines", "a"]), (5, ["three", "b"])]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("plain", r"data.csv.gz: not gzip-compressed, though its name ends in \.gz"),
        ("truncated", r"data.csv.gz: the gzip data ends early, after line \d+ \(a truncated file\?\)"),
        ("crc", r"data.csv.gz: the gzip data is corrupt after line 201 \(CRC check failed"),
    ],
)
def test_gzip_damage_is_one_line_error_on_every_path(tmp_path, damage, message):
    plain = b"text,label\n" + b"".join(b"row %d,%d\n" % (i, i % 2) for i in range(200))
    packed = bytearray(gzip.compress(plain))
    if damage == "plain":
        packed = bytearray(plain)
    elif damage == "truncated":
        del packed[len(packed) // 2 :]
    else:
        packed[-8] ^= 1  # the CRC32 of the trailer
    path = tmp_path / "data.csv.gz"
    path.write_bytes(bytes(packed))
    outcomes = read_every_way(path)
    for way, outcome in outcomes.items():
        assert isinstance(outcome, DataError) and re.search(message, str(outcome)), (way, outcome)


def test_gzip_data_without_gz_name_gets_a_hint(tmp_path):
    (tmp_path / "data.csv").write_bytes(gzip.compress(b"text,label\na,b\n"))
    with pytest.raises(DataError, match="line 1 is not valid UTF-8 .*it looks gzip-compressed: name it .gz"):
        read_file(tmp_path / "data.csv")


def test_json_lines_refusals(tmp_path):
    cases = {
        '{"text": "a", "text": "b", "label": 1}': "line 1 has the key 'text' twice",
        '{"text": "a", "label": NaN}': r"line 1 is not valid JSON \(NaN is not JSON\)",
        "[" * 100_000: "line 1 nests JSON arrays or objects too deeply",
        '{"text": "a", "label": ' + "9" * 5000 + "}": "line 1 is not valid JSON",
        '"just a string"': "line 1 is not a JSON object",
    }
    for line, message in cases.items():
        (tmp_path / "in.jsonl").write_text(line + "\n")
        with pytest.raises(DataError, match=message):
            read_file(tmp_path / "in.jsonl")


def test_records_of_a_stream():
    """What ``predict`` reads from standard input: lines without BOM or CR, split at \\n only."""
    with pytest.raises(DataError, match="unknown format 'xml'"):
        Records(io.BytesIO(b""), "xml", "x")
    records = Records(io.BytesIO("\ufeffone\r\ntwo\u2028still two\n".encode()), "txt", "stdin")
    assert [row for _, row in records] == [["one"], ["two\u2028still two"]]


def test_fasttext_lines_split_as_fasttext_splits_them():
    # fastText's Dictionary::readWord splits on ASCII whitespace and NUL only; getLine takes every
    # token starting with the prefix as a label, wherever it stands
    assert fasttext_line("__label__a __label__b  good\tfilm\n") == ("good film", ["a", "b"])
    assert fasttext_line("good __label__b film __label__a __label__b") == ("good film", ["b", "a"])
    assert fasttext_line("no labels here") == ("no labels here", [])
    assert fasttext_line("x__label__a \u00a0caf\u00e9\x00__label__c") == ("x__label__a \u00a0caf\u00e9", ["c"])
    assert fasttext_line("__label__\u65e5\u672c \u8a9e") == ("\u8a9e", ["\u65e5\u672c"])
    with pytest.raises(ValueError, match="bare '__label__'"):
        fasttext_line("__label__ text")


def test_multi_label_data_in_the_three_formats(tmp_path):
    rows = [("good sound", ["audio"]), ("photo and sound", ["audio", "graphics"]), ("nothing", [])]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": labels}) + "\n" for t, labels in rows))
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"{t},{'|'.join(labels)}\n" for t, labels in rows))
    (tmp_path / "d.txt").write_text("".join(" ".join([*(f"__label__{x}" for x in labels), t]) + "\n" for t, labels in rows))
    for data in (read_file(tmp_path / "d.jsonl"), read_file(tmp_path / "d.csv", label_sep="|"), read_file(tmp_path / "d.txt")):
        assert data.task == "multi-label" and data.labels == []
        assert data.texts == [t for t, _ in rows] and data.label_sets == [labels for _, labels in rows]
    assert read_file(tmp_path / "d.txt", fmt="fasttext").label_sets == [labels for _, labels in rows]
    # without a separator a CSV cell is one label, and an empty cell is refused as before
    with pytest.raises(DataError, match="line 4 has an empty label"):
        read_file(tmp_path / "d.csv")
    with pytest.raises(DataError, match="--label-sep applies to CSV, TSV and JSON Lines"):
        read_file(tmp_path / "d.txt", label_sep="|")


def test_one_label_per_text_stays_multi_class_unless_forced(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    (tmp_path / "d.txt").write_text("__label__pos good\n__label__neg bad\n")
    for data in (read_file(tmp_path / "d.csv", label_sep=","), read_file(tmp_path / "d.txt")):
        assert data.task == "multi-class" and data.labels == ["pos", "neg"] and data.label_sets is None
    forced = read_file(tmp_path / "d.csv", multi_label=True)
    assert forced.task == "multi-label" and forced.label_sets == [["pos"], ["neg"]]


def test_label_lists_repeats_and_refusals(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": ["x", 2, true, "x", " y "]}\n')
    assert read_file(tmp_path / "d.jsonl").label_sets == [["x", "2", "true", "y"]]
    (tmp_path / "d.csv").write_text('text,label\na,"x, y,,z"\n')
    with pytest.raises(DataError, match="line 2 has an empty label"):
        read_file(tmp_path / "d.csv", label_sep=",")
    for body, message in (
        ('{"text": "a", "label": ["x", null]}', "a label in the list of 'label' is null"),
        ('{"text": "a", "label": ["x", ""]}', "line 1 has an empty label"),
        ('{"text": "a", "label": {"x": 1}}', "is an object; give a label or a list of labels"),
    ):
        (tmp_path / "d.jsonl").write_text(body + "\n")
        with pytest.raises(DataError, match=re.escape(message)):
            read_file(tmp_path / "d.jsonl")
    (tmp_path / "d.txt").write_text("__label__a fine\n__label__ oops\n")
    with pytest.raises(DataError, match="d.txt: line 2: a bare '__label__' with no label name"):
        read_file(tmp_path / "d.txt")


def test_a_txt_output_keeps_the_input_format_not_fasttexts(tmp_path):
    # labelled .txt input is fastText's; an output named .txt still takes the input's format
    (tmp_path / "in.csv").write_text("text\ngood\n")
    assert predict_file(Fixed(), tmp_path / "in.csv", tmp_path / "out.txt").format == "csv"
    assert (tmp_path / "out.txt").read_text().splitlines()[0] == "text,label,score"

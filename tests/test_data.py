"""Reading CSV/TSV/JSONL files and the built-in dataset, clear errors, the split."""

from __future__ import annotations

import gzip
import json

import pytest

from rnnonnx.data import check_classes, read_builtin, read_file, sorted_labels, split
from rnnonnx.errors import DataError

FOUR = [
    ("I love this product", 0),
    ("This is a bad product", 1),
    ("I am happy with this purchase", 0),
    ("I am disappointed with this purchase", 1),
]


def test_builtin_dataset_ships_inside_the_package():
    data = read_builtin()
    assert len(data.texts) == 10041 and data.skipped_empty == 0
    assert sorted_labels(data.labels) == ["neg", "pos"]
    assert data.labels.count("pos") == 4981


def test_csv_with_bom_and_integer_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,label\n".encode() + "".join(f'"{t}",{y}\n' for t, y in FOUR).encode())
    data = read_file(path)
    assert data.texts[0] == "I love this product" and data.labels == ["0", "1", "0", "1"]


def test_tsv_and_custom_columns(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("id\tbody\tclass\n1\tgood one\tA\n2\tbad one\tB\n", encoding="utf-8")
    data = read_file(path, text_col="body", label_col="class")
    assert data.texts == ["good one", "bad one"] and data.labels == ["A", "B"]


def test_jsonl_with_integer_labels_and_format_override(tmp_path):
    path = tmp_path / "d.data"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in FOUR), encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_file(path)
    data = read_file(path, fmt="jsonl")
    assert data.labels == ["0", "1", "0", "1"]


def test_numeric_labels_sort_numerically():
    assert sorted_labels(["10", "2", "1"]) == ["1", "2", "10"]
    assert sorted_labels(["b", "a"]) == ["a", "b"]


def test_empty_texts_are_skipped_and_counted(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,a\n,b\n   ,a\nbad,b\n", encoding="utf-8")
    data = read_file(path)
    assert data.texts == ["good", "bad"] and data.skipped_empty == 2
    assert "skipped 2 row(s) with empty text" in data.warnings[0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("empty.csv", b"", "the file is empty"),
        ("header.csv", b"text,label\n", "the file is empty"),
        ("cols.csv", b"body,label\nhi,a\n", "no column 'text'"),
        ("bytes.csv", b"text,label\ngood,a\nbad \xff\xfe,b\n", "line 3 is not valid UTF-8"),
        ("json.jsonl", b'{"text": "a", "label": 1}\n{"text": \n', "line 2 is not valid JSON"),
        ("nolabel.csv", b"text,label\ngood,a\nbad,\n", "line 3 has an empty label"),
        ("allempty.csv", b"text,label\n,a\n,b\n", "every row has an empty text"),
        ("dup.csv", b"text,label,text\na,b,c\n", "line 1: the header names the column 'text' twice"),
        ("dup.tsv", b"id\ttext\tlabel\tlabel\n1\ta\tb\tc\n", "the header names the column 'label' twice"),
        ("dupkey.jsonl", b'{"text": "a", "label": 1, "label": 2}\n', "line 1 has the key 'label' twice"),
        (
            "object.jsonl",
            b'{"text": "a", "label": 1}\n{"text": {"body": "b"}, "label": 0}\n',
            "line 2: the value of 'text' is an object; a text must be a string",
        ),
        ("list.jsonl", b'{"text": ["a"], "label": 1}\n', "line 1: the value of 'text' is an array"),
        ("number.jsonl", b'{"text": 12, "label": 1}\n', "line 1: the value of 'text' is a number"),
        (
            "listlabel.jsonl",
            b'{"text": "a", "label": [[1], 2]}\n',
            "line 1: a label in the list of 'label' is an array",
        ),
        ("objlabel.jsonl", b'{"text": "a", "label": {"y": 1}}\n', "line 1: the value of 'label' is an object"),
        ("wide.csv", b"text,label\nhello, world,a\n", "line 2 has 3 fields, the header has 2"),
        ("plain.csv.gz", b"text,label\ngood,a\nbad,b\n", "not gzip-compressed, though its name ends in .gz"),
        ("truncated.csv.gz", gzip.compress(b"text,label\n" + b"a fine text,a\n" * 3000)[:60], "the gzip data ends early"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_file(path)


def test_single_class_is_refused(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\ngood,a\nfine,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="only one class"):
        check_classes(read_file(path))


def test_split_is_stratified_disjoint_and_seeded():
    labels = read_builtin().labels
    parts = split(labels, 0.1, 0.1, seed=3)
    assert not parts.validation_is_train
    assert len(parts.validation) == pytest.approx(1004, abs=2) and len(parts.test) == pytest.approx(1004, abs=2)
    all_rows = parts.train + parts.validation + parts.test
    assert sorted(all_rows) == list(range(len(labels)))
    share = sum(labels[i] == "pos" for i in parts.test) / len(parts.test)
    assert share == pytest.approx(labels.count("pos") / len(labels), abs=0.005)
    assert split(labels, 0.1, 0.1, seed=3).test == parts.test


def test_split_of_tiny_data_validates_on_training_rows():
    parts = split(["0", "1", "0", "1"], 0.1, 0.1, seed=0)
    assert parts.validation_is_train and parts.test == [] and parts.train == [0, 1, 2, 3]


def test_jsonl_texts_keep_unicode_line_separators(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028, U+2029 and U+0085 raw: they are not line breaks."""
    texts = ["first\u2028half", "second\u2029half", "third\x85half"]
    path = tmp_path / "raw.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t, "label": i % 2}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)), encoding="utf-8"
    )
    data = read_file(path)
    assert data.texts == texts and data.labels == ["0", "1", "0"]


def test_jsonl_values_that_read(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [
        {"text": "a", "label": True},
        {"text": None, "label": "x"},
        {"text": "b", "label": 2.0},
        {"text": "c", "label": 0.5},
        {"text": "bad \ud800 half pair", "label": "\udfff"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = read_file(path)
    assert data.texts == ["a", "b", "c", "bad \ufffd half pair"] and data.labels == ["true", "2", "0.5", "\ufffd"]
    assert data.skipped_empty == 1


def test_a_field_longer_than_pythons_csv_limit_reads(tmp_path):
    body = "an e-mail that goes on " * 10_000  # 230,000 characters; Python's csv stops at 131,072
    path = tmp_path / "mail.csv"
    path.write_text(f'text,label\nshort,a\n"{body}",b\n', encoding="utf-8")
    assert read_file(path).texts == ["short", body]


def test_a_record_past_the_cap_names_its_line_and_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNONNX_MAX_RECORD_MB", "0.125")
    path = tmp_path / "mail.csv"
    path.write_text("text,label\nshort,a\n" + "x" * 140_000 + ",b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mail.csv: line 3 is longer than 0.125 MiB.*set RNNONNX_MAX_RECORD_MB"):
        read_file(path)


def test_a_class_seen_once_keeps_the_split_of_the_others():
    labels = ["a", "b"] * 750 + ["rare"]
    parts = split(labels, 0.1, 0.1, seed=0)
    assert not parts.validation_is_train and parts.rare == {"rare": 1}
    assert len(parts.test) == pytest.approx(150, abs=2) and len(parts.validation) == pytest.approx(150, abs=2)
    assert 1500 in parts.train and 1500 not in parts.validation + parts.test
    assert sorted(parts.train + parts.validation + parts.test) == list(range(1501))
    only_two = split(["a", "b", "b", "b"], 0.1, 0.1, seed=0)
    assert only_two.rare == {} and only_two.validation_is_train, "with one class left there is nothing to stratify"

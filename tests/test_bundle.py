"""The bundle reader/writer: checksums, format version, foreign and damaged files, atomic writes."""

from __future__ import annotations

import json
import shutil

import pytest

from rnnonnx.bundle import Bundle, write_bundle
from rnnonnx.errors import BundleError
from rnnonnx.text import Tokenizer, TokenizerSpec

TOKENIZER = Tokenizer(TokenizerSpec(), ["<pad>", "<unk>", "good"])


def make(tmp_path, name="b"):
    return write_bundle(tmp_path / name, {"model.onnx": b"not really onnx"}, TOKENIZER, ["neg", "pos"], {"note": "test"})


def test_round_trip(tmp_path):
    bundle = Bundle(make(tmp_path))
    assert bundle.labels == ["neg", "pos"] and bundle.tokenizer.vocab == TOKENIZER.vocab
    assert bundle.manifest["note"] == "test" and set(bundle.manifest["files"]) == {"model.onnx", "tokenizer.json", "labels.json"}
    assert bundle.has("model.onnx") and not bundle.has("model.int8.onnx")


def test_corrupted_file_is_detected_when_read_and_by_verify(tmp_path):
    path = make(tmp_path)
    (path / "model.onnx").write_bytes(b"not really onnX")
    bundle = Bundle(path)  # opening hashes only the labels: the model is checked when read
    with pytest.raises(BundleError, match="model.onnx: checksum mismatch"):
        bundle.read("model.onnx")
    with pytest.raises(BundleError, match="model.onnx: checksum mismatch"):
        bundle.verify()
    assert Bundle(path, verify=False).read("model.onnx") == b"not really onnX"


@pytest.mark.parametrize("name", ["labels.json", "tokenizer.json"])
def test_corrupted_labels_or_tokenizer_are_detected(tmp_path, name):
    path = make(tmp_path)
    data = (path / name).read_text()
    (path / name).write_text(data.replace("neg", "nog").replace("good", "goad"))
    with pytest.raises(BundleError, match=f"{name}: checksum mismatch"):
        Bundle(path).tokenizer


def test_truncated_file_is_detected(tmp_path):
    path = make(tmp_path)
    (path / "model.onnx").write_bytes(b"not really")
    with pytest.raises(BundleError, match="truncated"):
        Bundle(path)


def test_missing_file_is_detected(tmp_path):
    path = make(tmp_path)
    (path / "labels.json").unlink()
    with pytest.raises(BundleError, match="missing"):
        Bundle(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not an rnnonnx bundle"),
        ({"format_version": 99}, "format version 99 is not supported"),
        ({"files": {"../model.onnx": {}}}, "outside the bundle|lists no model.onnx"),
    ],
)
def test_foreign_or_future_manifest_is_refused(tmp_path, change, message):
    path = make(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(BundleError, match=message):
        Bundle(path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        Bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="missing manifest"):
        Bundle(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{oops")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle(tmp_path / "empty")


def test_failed_write_keeps_the_previous_bundle(tmp_path):
    path = make(tmp_path)
    before = (path / "manifest.json").read_text()
    with pytest.raises(TypeError):
        write_bundle(path, {"model.onnx": "text, not bytes"}, TOKENIZER, ["neg", "pos"], {})
    assert (path / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_rewrite_replaces_the_whole_directory(tmp_path):
    path = make(tmp_path)
    (path / "stray.txt").write_text("left over")
    write_bundle(path, {"model.onnx": b"v2"}, TOKENIZER, ["neg", "pos"], {})
    assert not (path / "stray.txt").exists() and Bundle(path).manifest["files"]["model.onnx"]["bytes"] == 2
    shutil.rmtree(path)


def test_outputs_get_the_usual_permissions(tmp_path):
    import os

    from rnnonnx.files import atomic_file

    mask = os.umask(0o022)
    try:
        path = make(tmp_path)
        with atomic_file(tmp_path / "out.txt") as handle:
            handle.write("x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644

"""``rnnonnx verify``: a deploy pipeline's check of a bundle, every problem one line."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

import rnnonnx
from rnnonnx.verification import GOLDEN_TOLERANCE, verify_bundle
from tests.conftest import ROOT, run_cli
from tests.test_bundle import copy_of, edit_json, resign


def test_a_fresh_bundle_verifies_with_its_golden_examples(tiny_int8_bundle):
    result = rnnonnx.verify(tiny_int8_bundle)
    assert result.ok, result.problems
    assert {f["name"] for f in result.files} >= {"model.onnx", "model.int8.onnx", "golden.json", "tokenizer.json", "labels.json"}
    assert all(f["ok"] for f in result.files)
    assert [c.file for c in result.graphs] == ["model.onnx", "model.text.onnx", "model.int8.onnx", "model.text.int8.onnx"]
    for check in result.graphs:
        assert check.loaded and check.golden["passed"] and check.golden["rows"] == result.golden_texts > 8
        assert check.golden["tolerance"] == GOLDEN_TOLERANCE[check.precision]
    done = run_cli("verify", str(tiny_int8_bundle))
    assert done.returncode == 0 and done.stderr == "" and done.stdout.strip().endswith("ok")
    report = json.loads(run_cli("verify", str(tiny_int8_bundle), "--json").stdout)
    assert report["ok"] and report["problems"] == [] and len(report["graphs"]) == 4
    # weights stored once: the ids and int8 graphs read them from other files (rnnonnx.storage)
    assert {g["file"]: g["weights_from"] for g in report["graphs"]} == {
        "model.onnx": ["model.text.onnx"],
        "model.text.onnx": [],
        "model.int8.onnx": ["model.text.onnx"],
        "model.text.int8.onnx": ["model.int8.onnx", "model.text.onnx"],
    }
    assert "model.onnx: loads, weights read from model.text.onnx;" in done.stdout


def test_a_bundle_without_golden_examples_verifies_everything_else(tiny_bundle, tmp_path):
    path = copy_of(tiny_bundle, tmp_path)
    (path / "golden.json").unlink()
    edit_json(path, "manifest.json", lambda data: data["files"].__delitem__("golden.json"))
    result = verify_bundle(path)
    assert result.ok and result.golden_texts is None and all(c.loaded and c.golden is None for c in result.graphs)
    assert "golden examples: absent" in result.text()


def test_the_committed_bundles_verify():
    done = run_cli("verify", str(ROOT / "exported" / "lstm"))
    assert done.returncode == 0, done.stderr
    assert "golden examples: absent" in done.stdout or "golden examples within" in done.stdout


def test_every_problem_is_one_line(tiny_bundle, tmp_path):
    """A corrupted model no default prediction reads, a truncated tokenizer and a stray file:
    loading the default graph would not notice the first; verify names all three."""
    path = copy_of(tiny_bundle, tmp_path)
    payload = bytearray((path / "model.onnx").read_bytes())
    payload[100] ^= 1
    (path / "model.onnx").write_bytes(bytes(payload))
    (path / "tokenizer.json").write_bytes((path / "tokenizer.json").read_bytes()[:-5])
    (path / "notes.txt").write_text("added later")
    result = verify_bundle(path)
    assert not result.ok
    assert any(p.endswith("model.onnx: checksum mismatch with the manifest (corrupted or modified)") for p in result.problems)
    assert any("tokenizer.json:" in p and "truncated" in p for p in result.problems)
    assert any("notes.txt: not listed in the manifest" in p for p in result.problems)
    assert {f["name"]: f["ok"] for f in result.files}["labels.json"] and not {f["name"]: f["ok"] for f in result.files}[
        "model.onnx"
    ]
    done = run_cli("verify", str(path))
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and done.stdout == "" and lines == result.problems and "Traceback" not in done.stderr


def test_a_re_signed_changed_model_fails_its_golden_examples(tiny_bundle, tmp_path):
    """Checksums cannot catch a model rewritten with its manifest; the golden examples can."""
    path = copy_of(tiny_bundle, tmp_path)
    model = onnx.load(str(path / "model.onnx"))
    bias = next(t for t in model.graph.initializer if t.name.endswith("head.bias"))
    values = onnx.numpy_helper.to_array(bias).copy()
    values[0] += 1.0
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    (path / "model.onnx").write_bytes(model.SerializeToString())
    resign(path, "model.onnx")
    result = verify_bundle(path)
    assert len(result.problems) == 1 and "model.onnx: golden examples differ from export's" in result.problems[0]
    assert [c.golden["passed"] for c in result.graphs] == [False, True]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["models"]["model.onnx"]["probabilities"][0].reverse(), "model.onnx: golden examples differ"),
        (lambda d: d["models"]["model.onnx"].update(probabilities=[[0.5]]), "must be .* rows of 2 numbers"),
        (lambda d: d["models"]["model.onnx"].update(tolerance="small"), "tolerance of 'model.onnx' must be a number"),
        (lambda d: d["models"].__delitem__("model.text.onnx"), "no expected probabilities for model.text.onnx"),
        (
            lambda d: d["models"].update({"model.int8.onnx": d["models"]["model.onnx"]}),
            "model.int8.onnx', which the bundle does not list",
        ),
        (lambda d: d.update(texts=[]), "'texts' must be a non-empty list"),
        (lambda d: [1, 2, 3], "not rnnonnx golden examples"),
    ],
)
def test_bad_golden_examples_are_one_line(tiny_bundle, tmp_path, change, message):
    path = copy_of(tiny_bundle, tmp_path)
    golden = json.loads((path / "golden.json").read_text())
    probabilities = golden["models"]["model.onnx"]["probabilities"]
    if np.isclose(*probabilities[0], atol=1e-4):  # reversing a near-tie would change too little
        probabilities[0] = [0.9, 0.1]
    edit_json(path, "golden.json", change)
    result = verify_bundle(path)
    assert any(re.search(message, p) for p in result.problems), result.problems
    assert all("\n" not in p for p in result.problems)


def test_an_unreadable_manifest_is_the_one_problem(tmp_path):
    result = verify_bundle(tmp_path / "nowhere")
    assert result.problems == [f"{tmp_path / 'nowhere'}: not a bundle directory (run 'rnnonnx export' to make one)"]


def test_verify_is_part_of_the_api():
    from rnnonnx import api

    assert "verify" in rnnonnx.__all__ and rnnonnx.verify is api.verify

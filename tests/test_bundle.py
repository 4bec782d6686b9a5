"""The bundle reader/writer: checksums, format version, foreign and damaged files, atomic writes."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnonnx.bundle import MANIFEST_MAX_BYTES, Bundle, sha256_of, write_bundle
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
        _ = Bundle(path).tokenizer


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


# ---- a real bundle, damaged the ways a disk, a buggy tool or a hostile user can damage it ----

TEXTS = ["a wonderful, moving film", "dull and far too long", ""]
DEEP = 200_000


def copy_of(bundle, tmp_path, name="copy"):
    """A copy of ``bundle`` under ``tmp_path`` to damage."""
    return Path(shutil.copytree(bundle, tmp_path / name, symlinks=True))


def resign(path, *names):
    """Update the manifest's size and sha256 of ``names`` to match the files: what a tool that
    rewrites a bundle file (or someone who can write the bundle) does."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in names:
        manifest["files"][name] = {"sha256": sha256_of(path / name), "bytes": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


def edit_json(path, name, change, sign=True):
    """Replace ``name``'s JSON by ``change(data)`` (or edit it in place when that returns None)."""
    data = json.loads((path / name).read_text())
    new = change(data)
    (path / name).write_text(json.dumps(data if new is None else new))
    if sign and name != "manifest.json":
        resign(path, name)


def _deep(path, name, sign):
    (path / name).write_text("[" * DEEP + "]" * DEEP)
    if sign:
        resign(path, name)


def _extra_tokens(data):
    data["vocab"] += [f"zz{i}" for i in range(50)]


def _fifo(path, name):
    (path / name).unlink()
    os.mkfifo(path / name)


def _link(path, name, target):
    (path / name).unlink()
    (path / name).symlink_to(target)


def _manifest_model(**fields):
    return lambda data: data["model"].update(fields)


def _relabel(labels):
    def change(path):
        edit_json(path, "labels.json", lambda data: labels)
        edit_json(path, "manifest.json", lambda data: data.update(labels=labels))

    return change


# Each case: how to damage a copy, and a pattern of the one-line error. The ``ids`` cases are
# damage that only the ids graph reads (the text-in graph carries its own vocabulary).
BAD_BUNDLES = {
    "manifest nested 200,000 deep": (lambda p: _deep(p, "manifest.json", False), "manifest is nested too deeply"),
    "labels nested 200,000 deep, re-signed": (lambda p: _deep(p, "labels.json", True), "labels is nested too deeply"),
    "manifest linked to /dev/urandom": (
        lambda p: _link(p, "manifest.json", "/dev/urandom"),
        "character device, not a regular file",
    ),
    "manifest a FIFO": (lambda p: _fifo(p, "manifest.json"), "FIFO, not a regular file"),
    "labels linked to /dev/zero": (lambda p: _link(p, "labels.json", "/dev/zero"), "labels.json: a character device"),
    "model a FIFO": (lambda p: _fifo(p, "model.text.onnx"), "model.text.onnx: a FIFO"),
    "manifest over its size limit": (
        lambda p: (p / "manifest.json").write_bytes(b" " * (MANIFEST_MAX_BYTES + 1)),
        "over the 16,777,216-byte limit",
    ),
    "tokenizer [1,2,3], re-signed": (
        lambda p: edit_json(p, "tokenizer.json", lambda d: [1, 2, 3]),
        "expected a JSON object, found a list",
    ),
    "tokenizer lowercase unknown, re-signed": (
        lambda p: edit_json(p, "tokenizer.json", lambda d: d.update(lowercase="upper")),
        "unknown lowercase rule",
    ),
    "tokenizer vocab of numbers, re-signed": (
        lambda p: edit_json(p, "tokenizer.json", lambda d: d.update(vocab=["<pad>", "<unk>", 3])),
        "vocab entry 2 is an integer",
    ),
    "vocabulary longer than the embedding, re-signed": (
        lambda p: edit_json(p, "tokenizer.json", _extra_tokens),
        "but the model's embedding table has",
    ),
    "three labels for two outputs, re-signed": (
        lambda p: edit_json(p, "labels.json", lambda d: d + ["meh"]),
        "3 labels, but the model has 2 outputs",
    ),
    "three labels, manifest rewritten to match": (
        lambda p: (_relabel(["neg", "pos", "meh"])(p), edit_json(p, "manifest.json", _manifest_model(num_classes=3))),
        "labels.json has 3 labels|are not those of labels.json",
    ),
    "labels swapped, manifest rewritten to match": (_relabel(["pos", "neg"]), "are not those of labels.json"),
    "duplicate labels, re-signed": (lambda p: edit_json(p, "labels.json", lambda d: ["neg", "neg"]), "label names repeat"),
    "manifest sha256 not hex": (
        lambda p: edit_json(p, "manifest.json", lambda d: d["files"]["labels.json"].update(sha256="x" * 64)),
        "64 hex digits",
    ),
    "manifest names a file with a NUL": (
        lambda p: edit_json(p, "manifest.json", lambda d: d["files"].update({"a\0b": d["files"]["labels.json"]})),
        "outside the bundle",
    ),
}
IDS_ONLY = {
    "vocabulary longer than the embedding, manifest rewritten to match": (
        lambda p: (
            edit_json(p, "tokenizer.json", _extra_tokens),
            edit_json(
                p, "manifest.json", _manifest_model(vocab_size=len(json.loads((p / "tokenizer.json").read_text())["vocab"]))
            ),
        ),
        "fails on the vocabulary's largest id",
    ),
}


def damaged(tiny_bundle, tmp_path, case):
    damage, pattern = {**BAD_BUNDLES, **IDS_ONLY}[case]
    path = copy_of(tiny_bundle, tmp_path)
    damage(path)
    return path, pattern


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
@pytest.mark.parametrize("graph", ["ids", "text"])
def test_bad_bundle_is_one_line_error(tiny_bundle, tmp_path, case, graph):
    from rnnonnx.predictor import Predictor

    path, pattern = damaged(tiny_bundle, tmp_path, case)
    with pytest.raises(BundleError, match=pattern) as caught:
        Predictor(path, graph=graph).predict(TEXTS)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("case", list(IDS_ONLY))
def test_damage_only_the_ids_graph_reads(tiny_bundle, tmp_path, case):
    from rnnonnx.predictor import Predictor

    path, pattern = damaged(tiny_bundle, tmp_path, case)
    with pytest.raises(BundleError, match=pattern):
        Predictor(path, graph="ids")
    expected = Predictor(tiny_bundle, graph="text").predict_proba(TEXTS)
    np.testing.assert_array_equal(Predictor(path, graph="text").predict_proba(TEXTS), expected)


def test_nan_model_is_refused(tiny_bundle, tmp_path):
    import onnx

    from rnnonnx.predictor import Predictor

    path = copy_of(tiny_bundle, tmp_path)
    model = onnx.load(str(path / "model.onnx"))
    bias = next(t for t in model.graph.initializer if t.name.endswith("head.bias"))
    values = onnx.numpy_helper.to_array(bias).copy()
    values[:] = np.nan
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    (path / "model.onnx").write_bytes(model.SerializeToString())
    resign(path, "model.onnx")
    with pytest.raises(BundleError, match="non-finite probabilities"):
        Predictor(path, graph="ids")


def test_graph_with_other_names_is_refused(tiny_bundle, tmp_path):
    from rnnonnx.predictor import Predictor

    path = copy_of(tiny_bundle, tmp_path)
    shutil.copyfile(path / "model.text.onnx", path / "model.onnx")
    resign(path, "model.onnx")
    with pytest.raises(BundleError, match="not an rnnonnx ids graph"):
        Predictor(path, graph="ids")


def test_symlinks_to_regular_files_are_followed(tiny_bundle, tmp_path):
    """A bundle may be assembled from links (a content-addressed store, a deploy directory of
    links): they are followed, and the checksums still apply to what they point at."""
    from rnnonnx.predictor import Predictor

    store = copy_of(tiny_bundle, tmp_path, "store")
    path = tmp_path / "linked"
    path.mkdir()
    for item in store.iterdir():
        (path / item.name).symlink_to(item)
    np.testing.assert_array_equal(Predictor(path).predict_proba(TEXTS), Predictor(tiny_bundle).predict_proba(TEXTS))
    labels = (store / "labels.json").read_text()
    (store / "labels.json").write_text(labels.replace("neg", "XXX").replace("pos", "neg").replace("XXX", "pos"))
    with pytest.raises(BundleError, match="labels.json: checksum mismatch"):
        Predictor(path)


def test_loading_checks_only_the_model_it_runs_and_verify_checks_all(tiny_bundle, tmp_path):
    """What loading promises: every listed file present with its size, labels and tokenizer
    hashed, and the model file it runs hashed; another model file's bytes are not read."""
    from rnnonnx.predictor import Predictor

    path = copy_of(tiny_bundle, tmp_path)
    payload = bytearray((path / "model.onnx").read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (path / "model.onnx").write_bytes(bytes(payload))
    np.testing.assert_array_equal(
        Predictor(path, graph="text").predict_proba(TEXTS), Predictor(tiny_bundle, graph="text").predict_proba(TEXTS)
    )
    with pytest.raises(BundleError, match="model.onnx: checksum mismatch"):
        Predictor(path, graph="ids")
    with pytest.raises(BundleError, match="model.onnx: checksum mismatch"):
        Bundle(path).verify()


def _one_line_failure(done):
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case", list(BAD_BUNDLES) + list(IDS_ONLY))
def test_bad_bundle_through_the_cli(tiny_bundle, tmp_path, case):
    """predict (default and ids graphs), evaluate --data and verify: exit != 0, one line on stderr
    (verify: one line per problem), no traceback."""
    from tests.conftest import run_cli

    path, pattern = damaged(tiny_bundle, tmp_path, case)
    data = tmp_path / "data.csv"
    data.write_text("text,label\na wonderful film,pos\na dull film,neg\n")
    commands = [["predict", str(path), "--graph", "ids", "a film"]]
    if case not in IDS_ONLY:  # the default text-in graph does not read what these damage
        commands += [["predict", str(path), "a film"], ["evaluate", str(path), "--data", str(data)]]
    for command in commands:
        lines = _one_line_failure(run_cli(*command))
        assert len(lines) == 1 and re.search(pattern, lines[0]), (command, lines)
    lines = _one_line_failure(run_cli("verify", str(path)))
    assert any(re.search(pattern, line) for line in lines), lines


# ---- property-based: random damage to every file of a real bundle, re-signed or not ----

JSON_FILES = ("manifest.json", "tokenizer.json", "labels.json", "golden.json")
MODEL_FILES = ("model.onnx", "model.text.onnx")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
FAST = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
DEEP_RUN = settings(FAST, max_examples=400)
_ORIGINAL = {}


def original(bundle, graph):
    """Labels and probabilities of the undamaged bundle."""
    from rnnonnx.predictor import Predictor

    if (bundle, graph) not in _ORIGINAL:
        predictor = Predictor(bundle, graph=graph, device="cpu")
        _ORIGINAL[bundle, graph] = (predictor.labels, predictor.predict_proba(TEXTS))
    return _ORIGINAL[bundle, graph]


class Damaged:
    """Damaged bytes, shown in a failing example by what was done, not by the (large) bytes."""

    def __init__(self, payload: bytes, what: str) -> None:
        self.payload, self.what = payload, what

    def __repr__(self) -> str:
        return self.what


@st.composite
def byte_damage(draw, payload: bytes) -> Damaged:
    """A bit flipped, bytes overwritten, or the file cut short."""
    kind = draw(st.sampled_from(["flip", "overwrite", "truncate"]))
    if kind == "truncate":
        cut = draw(st.integers(0, max(0, len(payload) - 1)))
        return Damaged(payload[:cut], f"cut to {cut} bytes")
    at = draw(st.integers(0, len(payload) - 1))
    if kind == "flip":
        bit = draw(st.integers(0, 7))
        return Damaged(payload[:at] + bytes([payload[at] ^ (1 << bit)]) + payload[at + 1 :], f"bit {bit} of byte {at} flipped")
    patch = draw(st.binary(min_size=1, max_size=8))
    return Damaged(payload[:at] + patch + payload[at + len(patch) :], f"{patch!r} written at {at}")


@st.composite
def json_damage(draw, payload: bytes) -> Damaged:
    """One node of the JSON document replaced by a random value, deleted, or given a sibling."""
    document = json.loads(payload)
    parent, key, node, where = None, None, document, []
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        parent, key = node, draw(st.sampled_from(sorted(node)) if isinstance(node, dict) else st.integers(0, len(node) - 1))
        node = parent[key]
        where.append(key)
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    value = draw(JSON_VALUES)
    if parent is None and action != "add":
        document = value
    elif action == "replace":
        parent[key] = value
    elif action == "delete":
        del parent[key]
    elif isinstance(node, list):
        node.insert(draw(st.integers(0, len(node))), value)
    elif isinstance(node, dict):
        node[draw(st.text(max_size=8))] = value
    else:
        parent[key] = [node, value]
    return Damaged(json.dumps(document).encode(), f"{action} at {where!r:.200} with {value!r:.200}")


def _damaged_copy(bundle, workdir, draw, names):
    """Copy ``bundle`` into ``workdir`` and damage one of ``names``: (path, name, re-signed)."""
    path = copy_of(bundle, Path(workdir))
    name = draw(st.sampled_from(names))
    payload = (path / name).read_bytes()
    damage = json_damage(payload) if name in JSON_FILES and draw(st.booleans()) else byte_damage(payload)
    (path / name).write_bytes(draw(damage).payload)
    signed = name != "manifest.json" and draw(st.booleans())
    if signed:
        resign(path, name)
    return path, name, signed


def _check_json_damage(tiny_bundle, data):
    """Loading and predicting is the original result or a one-line RnnonnxError. Re-signed, the
    probabilities stay the original's except when the ids graph's tokenizer was changed (a
    different, consistent vocabulary gives different, valid probabilities)."""
    import tempfile

    from rnnonnx.errors import RnnonnxError
    from rnnonnx.predictor import Predictor

    graph = data.draw(st.sampled_from(["ids", "text"]))
    labels, expected = original(tiny_bundle, graph)
    with tempfile.TemporaryDirectory() as workdir:
        path, name, signed = _damaged_copy(
            tiny_bundle, workdir, data.draw, JSON_FILES + MODEL_FILES if not data.draw(st.booleans()) else JSON_FILES
        )
        if signed and name in MODEL_FILES:
            signed = False  # re-signed model bytes reach ONNX Runtime: tested in a subprocess below
            (path / name).write_bytes((tiny_bundle / name).read_bytes()[:-1] + b"\x00")
        try:
            predictor = Predictor(path, graph=graph, device="cpu")
            got = predictor.predict_proba(TEXTS)
        except RnnonnxError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
        assert predictor.labels == labels
        if signed and graph == "ids" and name == "tokenizer.json":
            assert got.shape == expected.shape and np.isfinite(got).all() and np.allclose(got.sum(axis=1), 1, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, expected)


@FAST
@given(data=st.data())
def test_damaged_bundle_predicts_correctly_or_fails_in_one_line(tiny_bundle, data):
    _check_json_damage(tiny_bundle, data)


@pytest.mark.slow
@DEEP_RUN
@given(data=st.data())
def test_damaged_bundle_predicts_correctly_or_fails_in_one_line_deep(tiny_bundle, data):
    _check_json_damage(tiny_bundle, data)


CHILD = """
import json, sys
import numpy as np
from rnnonnx.errors import RnnonnxError
from rnnonnx.predictor import Predictor
try:
    proba = Predictor(sys.argv[1], graph=sys.argv[2], device="cpu").predict_proba(json.loads(sys.argv[3]))
except RnnonnxError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
assert proba.shape == (len(json.loads(sys.argv[3])), 2) and np.isfinite(proba).all()
print(json.dumps(proba.tolist()))
"""


def _check_resigned_model(tiny_bundle, data):
    """Re-signed damage to a model file reaches ONNX Runtime, which may crash on some malformed
    protobufs, so it runs in a child process: a clean result or one line, never a signal."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        path = copy_of(tiny_bundle, Path(workdir))
        name = data.draw(st.sampled_from(MODEL_FILES))
        (path / name).write_bytes(data.draw(byte_damage((path / name).read_bytes())).payload)
        resign(path, name)
        graph = "ids" if name == "model.onnx" else "text"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), graph, json.dumps(TEXTS)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
        )
    assert done.returncode in (0, 1), (done.returncode, done.stderr[-2000:])
    if done.returncode == 1:
        # ONNX Runtime's regular-expression library may log its own complaint about a damaged
        # pattern before the error is raised; the error itself is the last line.
        assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith(str(path)), done.stderr[-2000:]


@settings(FAST, max_examples=6)
@given(data=st.data())
def test_re_signed_model_damage_is_a_clean_result_or_one_line(tiny_bundle, data):
    _check_resigned_model(tiny_bundle, data)


@pytest.mark.slow
@settings(FAST, max_examples=60)
@given(data=st.data())
def test_re_signed_model_damage_is_a_clean_result_or_one_line_deep(tiny_bundle, data):
    _check_resigned_model(tiny_bundle, data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("thresholds"), "a multi-label bundle needs 'thresholds', one number in [0, 1] per label"),
        (lambda m: m.update(thresholds=[0.5] * 3), "a multi-label bundle needs 'thresholds'"),
        (lambda m: m.update(thresholds=[0.5, 0.5, 1.5, 0.5]), "a multi-label bundle needs 'thresholds'"),
        (lambda m: m.update(thresholds=[0.5, 0.5, True, 0.5]), "a multi-label bundle needs 'thresholds'"),
        (lambda m: m.update(task="multi-class"), "task 'multi-class' disagrees with the model record (multi_label True)"),
        (lambda m: m.update(task="ranking"), "unknown task 'ranking' (one of multi-class, multi-label)"),
    ],
)
def test_the_task_and_thresholds_of_a_bundle_are_checked(tiny_multilabel_bundle, tmp_path, change, message):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_multilabel_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=re.escape(message)):
        Bundle(bundle)


def test_a_bundle_without_a_task_is_multi_class(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["task"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert Bundle(bundle).task == "multi-class" and Bundle(bundle).thresholds is None
    assert Bundle(tiny_bundle).task == "multi-class"


def test_model_metadata_that_is_not_utf8_is_one_line(tiny_bundle, tmp_path):
    path = copy_of(tiny_bundle, tmp_path)
    model = (path / "model.text.onnx").read_bytes()
    labels = json.dumps(Bundle(path).labels).encode()
    at = model.index(labels)  # the "labels" metadata value; one byte of it made invalid UTF-8
    (path / "model.text.onnx").write_bytes(model[: at + 2] + b"\xaa" + model[at + 3 :])
    resign(path, "model.text.onnx")
    from rnnonnx.predictor import Predictor

    with pytest.raises(BundleError, match="its metadata is not valid UTF-8"):
        Predictor(path, graph="text")

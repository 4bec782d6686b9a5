"""Export: the parity matrix between PyTorch and ONNX Runtime, graph checks, failure handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rnnonnx import Predictor
from rnnonnx.errors import ParityError
from rnnonnx.exporting import export_run, parity, passed, session_for, stored_model, synthetic_batches, to_onnx
from rnnonnx.model import ExportWrapper
from rnnonnx.run import Run
from rnnonnx.text import Tokenizer, TokenizerSpec
from tests.test_model import BAGS, ENSEMBLES, MATRIX, padded_batch, tiny_model

RECURRENT_OPS = {"RNN", "LSTM", "GRU"}


def tiny_run(arch: str, bidirectional: bool, layers: int, pooling: str = "last", members: int = 1, ngram_buckets: int = 0) -> Run:
    model = tiny_model(arch, bidirectional, layers, pooling, members=members, ngram_buckets=ngram_buckets)
    tokenizer = Tokenizer(TokenizerSpec(max_len=12), ["<pad>", "<unk>"] + [f"w{i}" for i in range(38)])
    config = {"model": model.config.to_dict(), "training": {}, "data": {}}
    return Run(Path("."), config, model, tokenizer, ["a", "b", "c"], None)


@pytest.mark.parametrize(
    ("arch", "bidirectional", "layers", "pooling", "members", "buckets"),
    [m + (1, 0) for m in MATRIX] + [e + (0,) for e in ENSEMBLES] + BAGS,
)
def test_parity_matrix(arch, bidirectional, layers, pooling, members, buckets):
    run = tiny_run(arch, bidirectional, layers, pooling, members, buckets)
    model_bytes = to_onnx(run)
    graph = onnx.load_from_string(model_bytes).graph
    recurrent = [n for n in graph.node if n.op_type in RECURRENT_OPS]
    assert len(recurrent) == layers * members and all(n.op_type == arch.upper() for n in recurrent)
    assert all(len(n.input) > 4 and n.input[4] for n in recurrent), "sequence_lens must be wired in"
    assert any(n.op_type == "Mod" for n in graph.node) == bool(buckets), "the bigram hash is in the graph"
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]

    session = session_for(model_bytes)
    wrapper = ExportWrapper(run.model).eval()
    worst_padded = worst_unpadded = worst_alone = 0.0
    rng = np.random.default_rng(1)
    for ids in synthetic_batches(40, 12):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(ids))[1].numpy()
        got = session.run(["probabilities"], {"input_ids": ids})[0]
        padded = (ids == 0).any()
        diff = float(np.abs(expected - got).max())
        worst_padded, worst_unpadded = (
            (max(worst_padded, diff), worst_unpadded) if padded else (worst_padded, max(worst_unpadded, diff))
        )
        assert (expected.argmax(1) == got.argmax(1)).all()
    for batch in (3, 16):
        ids, lengths = padded_batch(rng, batch, 12)
        together = session.run(["probabilities"], {"input_ids": ids})[0]
        for i, n in enumerate(lengths):
            alone = session.run(["probabilities"], {"input_ids": ids[i : i + 1, : max(1, n)]})[0]
            worst_alone = max(worst_alone, float(np.abs(alone - together[i]).max()))
    assert worst_padded <= 1e-5 and worst_unpadded <= 1e-5
    assert worst_alone <= 1e-6


def test_parity_report_flags_a_disagreeing_graph():
    run = tiny_run("lstm", False, 1)
    model = onnx.load_from_string(to_onnx(run))
    head_bias = next(t for t in model.graph.initializer if t.name.endswith("head.bias"))
    values = onnx.numpy_helper.to_array(head_bias).copy()
    values[0] += 0.01
    head_bias.CopyFrom(onnx.numpy_helper.from_array(values, head_bias.name))
    report = parity(run, session_for(model.SerializeToString()))
    assert not passed(report) and report["synthetic"].max_abs_diff > 1e-5
    assert passed(parity(run, session_for(to_onnx(run))))


def test_bundle_contents_and_metadata(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format"] == "rnnonnx-bundle" and manifest["format_version"] == 1
    assert {"model.onnx", "tokenizer.json", "labels.json"} <= set(manifest["files"])
    assert manifest["parity"]["model.onnx"]["passed"]
    assert manifest["parity"]["model.onnx"]["validation"]["rows"] > 0
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "scikit-learn"}
    assert manifest["model"]["arch"] == "lstm" and "val_accuracy" in manifest["training"]
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["labels"]) == ["neg", "pos"] and meta["rnnonnx_format_version"] == "1"
    assert json.loads(meta["tokenizer"])["analyzer"] == "word"


def test_failed_parity_leaves_no_bundle_and_keeps_the_old_one(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    before = (out / "manifest.json").read_bytes()
    monkeypatch.setattr("rnnonnx.exporting.TOLERANCE", -1.0)
    with pytest.raises(ParityError, match="no bundle written"):
        export_run(tiny_run, out, log=lambda message: None)
    assert (out / "manifest.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_refused_out_is_refused_before_the_conversion(tiny_run, tmp_path, monkeypatch):
    from rnnonnx.errors import OutputError

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted before checking --out")

    monkeypatch.setattr("rnnonnx.exporting.to_onnx", no_conversion)
    with pytest.raises(OutputError, match="input"):
        export_run(tiny_run, tiny_run.parent, log=lambda message: None)
    assert (tiny_run / "model.safetensors").is_file()


def test_golden_examples_are_the_ids_graph_on_validation_and_edge_texts(tiny_bundle, tiny_run):
    """golden.json (for ``rnnonnx verify``): validation and edge texts, and per model file the
    probabilities of its ids graph, each text run alone."""
    from rnnonnx import exporting
    from rnnonnx.run import load_run
    from rnnonnx.textgraph import edge_texts
    from rnnonnx.verification import GOLDEN_MAX_CHARS, GOLDEN_TOLERANCE, GOLDEN_VALIDATION_TEXTS

    assert GOLDEN_TOLERANCE["fp32"] == exporting.TOLERANCE
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert "golden.json" in manifest["files"]
    golden = json.loads((tiny_bundle / "golden.json").read_text())
    run = load_run(tiny_run)
    validation, _ = run.held_out("validation")
    texts = golden["texts"]
    assert texts == list(validation[:GOLDEN_VALIDATION_TEXTS]) + [t[:GOLDEN_MAX_CHARS] for t in edge_texts()]
    assert len(texts) > GOLDEN_VALIDATION_TEXTS and len(run.tokenizer.encode(texts[-1])) == run.tokenizer.spec.max_len
    assert set(golden["models"]) == {"model.onnx", "model.text.onnx"}
    session = Predictor(tiny_bundle, graph="ids").session  # model.onnx reads its weights from model.text.onnx
    for _name, entry in golden["models"].items():
        assert entry["precision"] == "fp32" and entry["tolerance"] == exporting.TOLERANCE
        for text, row in zip(texts, entry["probabilities"], strict=True):
            alone = session.run(["probabilities"], {"input_ids": run.tokenizer.encode_batch([text])})[0][0]
            assert row == [float(p) for p in alone]


def test_a_multi_label_bundle_records_its_task_thresholds_and_sigmoid_parity(tiny_multilabel_run, tiny_multilabel_bundle):
    import onnxruntime as ort

    from rnnonnx.run import load_run

    manifest = json.loads((tiny_multilabel_bundle / "manifest.json").read_text())
    config = json.loads((tiny_multilabel_run / "config.json").read_text())
    assert manifest["task"] == config["task"] == "multi-label" and manifest["model"]["multi_label"] is True
    assert manifest["thresholds"] == config["thresholds"] and len(manifest["thresholds"]) == len(manifest["labels"]) == 4
    assert all(manifest["parity"][name]["passed"] for name in ("model.onnx", "model.text.onnx"))
    run = load_run(tiny_multilabel_run)
    stored_model(run, lambda message: None)  # the PyTorch reference holds the shipped (int8) tables
    ids = run.tokenizer.encode_batch(["sound music", "photo http server", "the and for", ""])
    with torch.no_grad():
        members = torch.stack([torch.sigmoid(m(torch.from_numpy(ids))) for m in run.model.members]).mean(dim=0).numpy()
    session = ort.InferenceSession(str(tiny_multilabel_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"input_ids": ids})[0]
    assert np.abs(got - members).max() <= 1e-5 and not np.allclose(got.sum(axis=1), 1.0, atol=1e-2)


def test_a_multi_class_bundle_says_so_and_has_no_thresholds(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["task"] == "multi-class" and "thresholds" not in manifest


def test_int8_is_refused_for_a_multi_label_run(tiny_multilabel_run, tmp_path):
    from rnnonnx.errors import RnnonnxError

    with pytest.raises(RnnonnxError, match="--quantize int8: not available for multi-label runs"):
        export_run(tiny_multilabel_run, tmp_path / "b", log=lambda message: None, quantize="int8")
    assert not (tmp_path / "b").exists()


def test_a_parity_refusal_says_how_to_accept_a_small_difference_and_the_manifest_records_it(tiny_run, tmp_path):
    import re

    out = tmp_path / "bundle"
    with pytest.raises(ParityError, match="no bundle written") as refused:
        export_run(tiny_run, out, log=lambda message: None, tolerance=1e-12)
    assert not out.exists()
    pattern = r"Every top label agrees and max \|dp\| is (\S+); if that is float rounding .* --tolerance (\S+) accepts it"
    hint = re.search(pattern, str(refused.value))
    assert hint, str(refused.value)
    worst, suggested = float(hint.group(1)), float(hint.group(2))
    assert 1e-12 < worst <= suggested <= 3 * worst
    export_run(tiny_run, out, log=lambda message: None, tolerance=suggested)
    parity_record = json.loads((out / "manifest.json").read_text())["parity"]["model.onnx"]
    assert parity_record["passed"] and parity_record["synthetic"]["tolerance"] == suggested
    assert parity_record["validation"]["tolerance"] == suggested


@pytest.mark.parametrize("tolerance", [0, -1e-5, 2e-3, float("nan"), True, "1e-5"])
def test_a_tolerance_out_of_range_is_refused_before_the_conversion(tiny_run, tmp_path, tolerance):
    from rnnonnx.errors import RnnonnxError

    with pytest.raises(RnnonnxError, match="tolerance must be a number in"):
        export_run(tiny_run, tmp_path / "bundle", log=lambda message: None, tolerance=tolerance)
    assert not (tmp_path / "bundle").exists()

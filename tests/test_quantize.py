"""int8 bundles: both int8 graphs written, fp32 and int8 accuracy side by side, a loud warning
past one point lost, GRU honestly left in fp32, and the predictor and CLI switches."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import onnx
import pytest

from tests.conftest import run_cli, small_sample
from rnnonnx.bundle import Bundle
from rnnonnx.data import read_builtin
from rnnonnx.errors import BundleError, RnnonnxError
from rnnonnx.exporting import export_run
from rnnonnx.predictor import Predictor
from rnnonnx.config import TrainConfig
from rnnonnx.bundle import INT8_MODEL, TEXT_INT8_MODEL
from rnnonnx.quantize import MAX_ACCURACY_DROP, verdict


@pytest.fixture(scope="module")
def int8_export(tiny_run, tmp_path_factory):
    """``rnnonnx export RUN --quantize int8`` on the tiny LSTM run: (bundle, the command's stderr)."""
    out = tmp_path_factory.mktemp("int8") / "bundle"
    done = run_cli("export", str(tiny_run), "--out", str(out), "--quantize", "int8")
    assert done.returncode == 0, done.stderr
    return out, done.stderr


@pytest.fixture(scope="module")
def gru_export(tmp_path_factory):
    """A tiny GRU run exported with int8, the accuracy threshold forced below any result so the
    loud warning must show: (bundle, log lines)."""
    from rnnonnx.config import TrainConfig
    from rnnonnx.training import train_run as train

    base = tmp_path_factory.mktemp("gru")
    train(TrainConfig(arch="gru", embed_dim=8, hidden=8, epochs=1, max_len=16, seed=1), base / "run", small_sample(200), progress=False)
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("rnnonnx.quantize.MAX_ACCURACY_DROP", -100.0)
        export_run(base / "run", base / "bundle", log=lines.append, quantize="int8")
    return base / "bundle", lines


def op_counts(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_int8_export_writes_both_int8_graphs_and_accuracy_side_by_side(int8_export, tiny_run):
    bundle, log = int8_export
    manifest = Bundle(bundle).manifest
    assert {INT8_MODEL, TEXT_INT8_MODEL, "model.onnx", "model.text.onnx"} <= set(manifest["files"])
    accuracy = manifest["int8"]["validation_accuracy"]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert accuracy["fp32"] == pytest.approx(metrics["val_accuracy"], abs=1e-9)
    assert 0.0 <= accuracy["int8"] <= 1.0 and accuracy["rows"] > 0
    assert accuracy["drop_points"] == pytest.approx(100 * (accuracy["fp32"] - accuracy["int8"]), abs=1e-3)
    assert manifest["int8"]["max_drop_points"] == MAX_ACCURACY_DROP
    assert (manifest["int8"]["warning"] is None) == (accuracy["drop_points"] <= MAX_ACCURACY_DROP)
    assert manifest["parity"][TEXT_INT8_MODEL]["passed"]
    assert f"int8: validation accuracy fp32 {accuracy['fp32']:.4f}, int8 {accuracy['int8']:.4f}" in log
    text = onnx.load(str(bundle / TEXT_INT8_MODEL))
    assert [i.name for i in text.graph.input] == ["text"] and [o.name for o in text.graph.output] == ["probabilities", "label"]
    assert {p.key: p.value for p in text.metadata_props}["labels"] == json.dumps(Bundle(bundle).labels)


def test_lstm_is_quantized_throughout(int8_export):
    bundle, _ = int8_export
    report = Bundle(bundle).manifest["int8"]
    assert report["layers"] == {"embedding": "int8", "recurrent": "int8", "output": "int8"} and "note" not in report
    ops = op_counts(bundle / INT8_MODEL)
    members = TrainConfig().members  # the tiny bundle is a default ensemble: every member quantized
    assert ops["DynamicQuantizeLSTM"] == members and ops["LSTM"] == 0 and ops["MatMulInteger"] == members


def test_gru_has_no_int8_kernel_and_export_says_so(gru_export):
    bundle, lines = gru_export
    report = Bundle(bundle).manifest["int8"]
    assert report["layers"] == {"embedding": "int8", "recurrent": "fp32", "output": "int8"}
    assert "no int8 GRU" in report["note"] and f"int8: {report['note']}" in lines
    ops = op_counts(bundle / INT8_MODEL)
    members = TrainConfig().members
    assert ops["GRU"] == members and ops["MatMulInteger"] == members and ops["DynamicQuantizeLSTM"] == 0


def test_losing_more_than_the_threshold_is_loud(gru_export):
    bundle, lines = gru_export
    warning = Bundle(bundle).manifest["int8"]["warning"]
    assert warning and "int8 loses" in warning and "prefer the fp32 model" in warning
    loud = next(line for line in lines if "WARNING" in line)
    assert loud.splitlines()[0] == "!" * 78 and f"WARNING: {warning}" in loud


def test_verdict_thresholds():
    assert verdict(0.80, 0.795) is None and verdict(0.80, 0.81) is None
    assert "loses 1.50 points" in verdict(0.80, 0.785)
    assert "not measured" in verdict(None, None)


def test_int8_predictor_runs_either_graph_alike(int8_export):
    bundle, _ = int8_export
    texts = read_builtin().texts[:300] + ["", "?!"]
    one = {g: Predictor(bundle, precision="int8", graph=g, batch_size=1).predict_proba(texts) for g in ("ids", "text")}
    assert np.abs(one["ids"] - one["text"]).max() <= 1e-6
    fp32 = Predictor(bundle, graph="ids").predict_proba(texts)
    assert 0 < np.abs(one["ids"] - fp32).max() < 0.05
    assert Predictor(bundle, precision="int8").model_file == TEXT_INT8_MODEL


def test_int8_results_move_with_the_batch_they_share(int8_export):
    """Dynamic quantization scales activations per batch, so (unlike fp32) a text's int8
    probabilities depend slightly on its batch company: documented, and bounded here."""
    bundle, _ = int8_export
    texts = read_builtin().texts[:300]
    alone = Predictor(bundle, precision="int8", graph="text", batch_size=1).predict_proba(texts)
    batched = Predictor(bundle, precision="int8", graph="text", batch_size=256).predict_proba(texts)
    assert 0 < np.abs(alone - batched).max() < 0.05


def test_precision_errors(int8_export, tiny_bundle, tiny_run, tmp_path):
    with pytest.raises(RnnonnxError, match="unknown precision"):
        Predictor(int8_export[0], precision="fp16")
    with pytest.raises(BundleError, match="--quantize int8"):
        Predictor(tiny_bundle, precision="int8")
    with pytest.raises(RnnonnxError, match="unknown quantization"):
        export_run(tiny_run, tmp_path / "b", log=lambda message: None, quantize="int4")
    assert not (tmp_path / "b").exists()


def test_cli_predict_int8(int8_export, tiny_bundle):
    bundle, _ = int8_export
    rows = {}
    for graph in ("ids", "text"):
        done = run_cli("predict", str(bundle), "--int8", "--graph", graph, "--json", "a gripping, lovely film", "")
        assert done.returncode == 0, done.stderr
        rows[graph] = np.array([list(json.loads(line)["probabilities"].values()) for line in done.stdout.splitlines()])
    assert rows["ids"].shape == (2, 2) and np.abs(rows["ids"] - rows["text"]).max() <= 1e-6
    refused = run_cli("predict", str(tiny_bundle), "--int8", "x")
    assert refused.returncode != 0 and refused.stderr.startswith("Error: ") and "no model.int8.onnx" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_int8_prediction_imports_no_training_libraries(int8_export):
    code = textwrap.dedent(f"""
        import sys
        from rnnonnx.predictor import Predictor
        Predictor({str(int8_export[0])!r}, precision="int8").predict(["fine"])
        print([m for m in ("torch", "onnx", "sklearn", "onnxruntime.quantization") if m in sys.modules])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

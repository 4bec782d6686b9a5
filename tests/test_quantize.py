"""int8 bundles: both int8 graphs written, fp32 and int8 accuracy side by side, an LSTM twin on ONNX
Runtime's int8 kernel with fixed ranges and a GRU twin storing int8 weights, a text's int8 result the
same alone or in any batch (to float rounding, the bound the manifest states), a loud warning past
one point lost, and the predictor and CLI switches."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import onnx
import pytest

from rnnonnx.bundle import INT8_MODEL, TEXT_INT8_MODEL, Bundle
from rnnonnx.config import TrainConfig
from rnnonnx.data import read_builtin
from rnnonnx.errors import BundleError, RnnonnxError
from rnnonnx.exporting import export_run
from rnnonnx.predictor import Predictor
from rnnonnx.quantize import (
    BATCH_INDEPENDENCE_BOUND,
    MAX_ACCURACY_DROP,
    RANGES_FIXED,
    batch_compositions,
    row_quantize,
    verdict,
)
from tests.conftest import run_cli, small_sample


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
    train(
        TrainConfig(arch="gru", embed_dim=8, hidden=8, epochs=1, max_len=16, seed=1),
        base / "run",
        small_sample(200),
        progress=False,
    )
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
    moved = manifest["int8"]["batch_independence"]
    assert manifest["int8"]["batch_independence_max_abs_diff"] <= moved["bound"] == BATCH_INDEPENDENCE_BOUND
    assert manifest["int8"]["ranges"] == RANGES_FIXED
    assert (
        moved["rows"] == accuracy["rows"]
        and moved["fp32_max_abs_diff"] <= BATCH_INDEPENDENCE_BOUND
        and len(moved["compositions"]) == 4
    )
    print(
        f"\ntiny LSTM int8: validation accuracy fp32 {accuracy['fp32']:.4f}, int8 {accuracy['int8']:.4f}; "
        f"batch independence max |dp| {manifest['int8']['batch_independence_max_abs_diff']:.2e}"
    )
    assert "int8: a text alone vs in other batches, max |dp|" in log
    assert f"int8: validation accuracy fp32 {accuracy['fp32']:.4f}, int8 {accuracy['int8']:.4f}" in log
    text = onnx.load(str(bundle / TEXT_INT8_MODEL))
    assert [i.name for i in text.graph.input] == ["text"] and [o.name for o in text.graph.output] == ["probabilities", "label"]
    assert {p.key: p.value for p in text.metadata_props}["labels"] == json.dumps(Bundle(bundle).labels)


def test_the_lstm_twin_runs_onnx_runtimes_int8_kernel_and_reads_the_tables_it_shares(int8_export):
    bundle, _ = int8_export
    report = Bundle(bundle).manifest["int8"]
    kind = "int8 weights, fp32 arithmetic"
    assert report["layers"] == {
        "embedding": kind,
        "recurrent": "int8 arithmetic (ONNX Runtime DynamicQuantizeLSTM)",
        "output": "fp32",
    }
    assert "DynamicQuantizeLSTM" in report["method"]
    ops = op_counts(bundle / INT8_MODEL)
    members = TrainConfig().members  # the tiny bundle has the default members: every member's layer on the int8 kernel
    assert ops["DynamicQuantizeLSTM"] == members and ops["LSTM"] == 0 and ops["DequantizeLinear"] == 0
    # the int8 tables are the default graphs' own bytes, read from model.text.onnx: the twins add little
    assert Bundle(bundle).manifest["external_data"][INT8_MODEL] == ["model.text.onnx"]
    assert (bundle / INT8_MODEL).stat().st_size < 2 * (bundle / "model.onnx").stat().st_size  # which reads them too


def test_the_lstm_kernels_weights_leave_no_cpu_room_to_saturate(int8_export):
    """x86 CPUs without VNNI sum pairs of uint8 x int8 products in int16 (ONNX Runtime's AVX2 kernel
    saturates at 32,767), others in int32: weights within [-64, 64] keep 2 x 255 x 64 below the limit,
    so every CPU, and the browser's wasm, computes the same integers."""
    from onnx import numpy_helper

    from rnnonnx.storage import resolve

    read = Bundle(int8_export[0])
    model = onnx.load_from_string(resolve(read.read(INT8_MODEL), {n: read.read(n) for n in read.external_data(INT8_MODEL)}))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    lstms = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    weights = [initializers[name] for n in lstms for name in n.input[1:3]]
    assert lstms and all(w.dtype == np.int8 for w in weights)
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert 32 < peak <= 64 and 2 * 255 * peak <= 32_767


@pytest.mark.slow
def test_the_lstm_twin_computes_the_same_on_the_kernels_of_cpus_without_vnni(int8_export, tmp_path):
    """On a CPU with int8 dot products (VNNI), a copy of ONNX Runtime that takes its AVX2 kernels
    instead (benchmarks/avx2_kernels.py) gives the twin's outputs exactly as this CPU's kernels do,
    while the same weights stretched over the full int8 range come out different there: the AVX2
    kernel's int16 pair sums saturate, and the 7-bit weights are what keep them from it."""
    from rnnonnx.machine import int8_dot_product
    from tests.conftest import load_script

    if not int8_dot_product():
        pytest.skip("this CPU has no int8 dot products: ONNX Runtime runs its AVX2 kernels here already")
    avx2 = load_script("avx2_kernels", "avx2_kernels.py")
    try:
        copy = avx2.patched_copy(tmp_path / "ort")
    except avx2.PatternsNotFound as exc:
        pytest.skip(str(exc))
    moved = avx2.kernel_agreement(int8_export[0], read_builtin().texts[:1000], copy, tmp_path)
    print(f"\ntiny LSTM int8 twin, this CPU's kernels vs AVX2 kernels, max |d| of the outputs: {moved}")
    assert moved[avx2.SHIPPED] <= BATCH_INDEPENDENCE_BOUND
    assert moved[avx2.STRETCHED] > 10 * BATCH_INDEPENDENCE_BOUND  # the AVX2 kernels did run, and saturate


def test_the_gru_twin_stores_every_weight_matrix_int8_and_computes_fp32(gru_export):
    bundle, _ = gru_export
    report = Bundle(bundle).manifest["int8"]
    kind = "int8 weights, fp32 arithmetic"
    assert report["layers"] == {"embedding": kind, "recurrent": kind, "output": kind}
    assert report["batch_independence"]["bound"] == BATCH_INDEPENDENCE_BOUND
    ops = op_counts(bundle / INT8_MODEL)
    members = TrainConfig().members
    assert ops["GRU"] == members and not {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear"} & set(ops)
    model = onnx.load(str(bundle / INT8_MODEL))
    scaled = {n.output[0] for n in model.graph.node if n.op_type == "Mul" and n.name.endswith("/dequantize")}
    reads = [
        (n.op_type, i)
        for n in model.graph.node
        for i, name in enumerate(n.input)
        if name in scaled and ((n.op_type == "GRU" and i in (1, 2)) or (n.op_type in ("Gemm", "MatMul") and i == 1))
    ]
    assert len(reads) == 3 * members, reads  # input and recurrent weights, head
    int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and not i.name.endswith("/zero")]
    tables = 2 if Bundle(bundle).manifest["model"]["ngram_buckets"] else 1  # token embedding, and the bag's bigram table
    linear = 1 if Bundle(bundle).manifest["model"]["linear_weight"] else 0  # the linear member's table
    assert len(int8) == (3 + tables) * members + linear
    assert not [i.name for i in model.graph.initializer if "/row_scale/" in i.name]


def test_the_gru_twin_scales_its_weights_back_once_at_load(gru_export, tmp_path):
    import onnxruntime as ort

    from rnnonnx.storage import resolve

    bundle, _ = gru_export
    read = Bundle(bundle)
    graph = resolve(read.read(TEXT_INT8_MODEL), {name: read.read(name) for name in read.external_data(TEXT_INT8_MODEL)})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(str(tmp_path / "loaded.onnx"))
    assert not [n.name for n in loaded.graph.node if any(i.endswith(("/int8", "/scale", "/row_scale")) for i in n.input)]


def test_row_quantize_keeps_each_row_within_half_a_step():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((50, 16)).astype(np.float32) * rng.uniform(0.01, 10, size=(50, 1)).astype(np.float32)
    table[0] = 0.0
    q, scale = row_quantize(table)
    assert q.dtype == np.int8 and scale.shape == (50,) and np.abs(q).max() == 127
    assert np.all(np.abs(q * scale[:, None] - table) <= scale[:, None] / 2 + 1e-7)
    assert scale[0] == 1.0 and not q[0].any()


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


def _moved_with_the_batch(bundle, graph: str) -> tuple[float, np.ndarray]:
    """The largest change of a text's int8 probabilities between running it alone and in batches of
    7, 64 and 256, in order and shuffled; and the probabilities alone."""
    alone = Predictor(bundle, precision="int8", graph=graph, batch_size=1).predict_proba(BATCH_TEXTS)
    moved = 0.0
    for size in (7, 64, 256):
        batched = Predictor(bundle, precision="int8", graph=graph, batch_size=size)
        moved = max(moved, float(np.abs(alone - batched.predict_proba(BATCH_TEXTS)).max()))
        order = np.random.default_rng(size).permutation(len(BATCH_TEXTS))
        moved = max(moved, float(np.abs(alone[order] - batched.predict_proba([BATCH_TEXTS[i] for i in order])).max()))
    return moved, alone


BATCH_TEXTS = read_builtin().texts[:300] + ["", "?!", " ".join(["good"] * 200)]


@pytest.mark.parametrize("graph", ["ids", "text"])
def test_weight_only_int8_results_do_not_depend_on_the_batch(gru_export, graph):
    bundle, _ = gru_export
    assert _moved_with_the_batch(bundle, graph)[0] <= BATCH_INDEPENDENCE_BOUND
    assert Bundle(bundle).manifest["int8"]["batch_independence_max_abs_diff"] <= BATCH_INDEPENDENCE_BOUND


@pytest.mark.parametrize("graph", ["ids", "text"])
def test_int8_kernel_results_do_not_depend_on_the_batch(int8_export, graph):
    """ONNX Runtime's int8 LSTM takes its activation scales from the matrix it multiplies; with the
    ranges fixed (rnnonnx.pinning) a text gets the same probabilities alone, in any batch and on
    1 or 2 threads, to float rounding."""
    bundle, _ = int8_export
    moved, alone = _moved_with_the_batch(bundle, graph)
    print(f"\ntiny LSTM int8 kernel, {graph} graph: a text alone vs batched, max |dp| {moved:.2e}")
    assert moved <= Bundle(bundle).manifest["int8"]["batch_independence"]["bound"] == BATCH_INDEPENDENCE_BOUND
    two = Predictor(bundle, precision="int8", graph=graph, batch_size=64, threads=2).predict_proba(BATCH_TEXTS)
    assert np.abs(alone - two).max() <= BATCH_INDEPENDENCE_BOUND


def test_batch_compositions_cover_every_text_once():
    for name, batches in batch_compositions(300).items():
        assert sorted(i for b in batches for i in b) == list(range(300)), name
    assert {len(b) for b in batch_compositions(300)["alone"]} == {1}


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


def test_evaluate_scores_the_int8_model_when_asked(int8_export, tiny_run):
    from rnnonnx.api import evaluate
    from rnnonnx.run import read_held_out

    bundle = int8_export[0]
    texts, _ = read_held_out(tiny_run, "test")
    int8, fp32 = (Predictor(bundle, device="cpu", precision=p).predict_proba(texts) for p in ("int8", "fp32"))
    result = evaluate(bundle, run_dir=tiny_run, device="cpu", precision="int8")
    assert result.model == f"{bundle} (int8)" and result.evaluated == len(texts)
    assert np.array_equal(result.proba, int8) and not np.array_equal(result.proba, fp32)
    done = run_cli("evaluate", str(bundle), "--run", str(tiny_run), "--int8", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == f"{bundle} (int8)"


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

"""Weights stored once and in int8: the ids graph reads the text graph's bytes, the PyTorch
reference holds the shipped tables, and a changed weight file is refused."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from rnnonnx import Predictor
from rnnonnx.bundle import MODEL, TEXT_MODEL, Bundle
from rnnonnx.errors import BundleError, RnnonnxError
from rnnonnx.exporting import session_for, stored_model, to_onnx
from rnnonnx.model import ExportWrapper
from rnnonnx.storage import EXTERNAL_MIN_BYTES, external_files, resolve, share_weights, store_embeddings
from tests.test_exporting import tiny_run


def external_tensors(model: onnx.ModelProto) -> dict[str, dict[str, str]]:
    external = [i for i in model.graph.initializer if i.data_location == TensorProto.EXTERNAL]
    return {i.name: {e.key: e.value for e in i.external_data} for i in external}


def test_ids_graph_reads_the_text_graphs_weight_bytes(tiny_bundle):
    bundle = Bundle(tiny_bundle)
    assert bundle.manifest["external_data"] == {MODEL: [TEXT_MODEL]}
    ids = onnx.load_from_string((tiny_bundle / MODEL).read_bytes())
    text_bytes = (tiny_bundle / TEXT_MODEL).read_bytes()
    text = {i.name: i for i in onnx.load_from_string(text_bytes).graph.initializer}
    shared = external_tensors(ids)
    tables = [name for name in shared if name.endswith("/int8")]
    assert tables, "the int8 embedding table must be read from model.text.onnx"
    for name, info in shared.items():
        assert info["location"] == TEXT_MODEL
        start, length = int(info["offset"]), int(info["length"])
        assert text_bytes[start : start + length] == text[name].raw_data
    inline = [i for i in ids.graph.initializer if i.data_location != TensorProto.EXTERNAL]
    assert all(len(i.raw_data) < EXTERNAL_MIN_BYTES for i in inline)
    assert (tiny_bundle / MODEL).stat().st_size < 0.5 * (tiny_bundle / TEXT_MODEL).stat().st_size
    assert text[tables[0]].data_type == TensorProto.INT8


def test_onnx_runtime_folds_the_int8_tables_once_at_load(tiny_bundle, tmp_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(tiny_bundle / TEXT_MODEL), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(str(tmp_path / "loaded.onnx"))
    assert not [n.name for n in loaded.graph.node if any(i.endswith(("/int8", "/row_scale")) for i in n.input)]
    initializers = {i.name: i for i in loaded.graph.initializer}
    gathered = [n.input[0] for n in loaded.graph.node if n.op_type == "Gather" and n.input[0] in initializers]
    assert any(initializers[name].data_type == TensorProto.FLOAT and len(initializers[name].dims) == 2 for name in gathered)


def test_both_graphs_give_the_same_probabilities(tiny_bundle):
    texts = ["a fine and moving film", "dull", ""]
    ids = Predictor(tiny_bundle, graph="ids").predict_proba(texts)
    text = Predictor(tiny_bundle, graph="text").predict_proba(texts)
    assert np.abs(ids - text).max() <= 1e-6


def tampered_copy(tiny_bundle, tmp_path, name):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    payload = bytearray((copy / name).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(payload))
    return copy


def test_a_changed_weight_file_is_refused_by_the_ids_graph(tiny_bundle, tmp_path):
    copy = tampered_copy(tiny_bundle, tmp_path, TEXT_MODEL)
    with pytest.raises(BundleError, match=r"model\.text\.onnx: checksum mismatch"):
        Predictor(copy, graph="ids")


def test_ids_graph_without_its_external_data_record_does_not_load(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["external_data"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RnnonnxError, match="ONNX Runtime cannot load it"):
        Predictor(copy, graph="ids")


@pytest.mark.parametrize(
    ("record", "why"),
    [({MODEL: ["nowhere.onnx"]}, "must list other files"), ({MODEL: [MODEL]}, "must list other files"), ([], "an object")],
)
def test_external_data_must_name_other_listed_files(tiny_bundle, tmp_path, record, why):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["external_data"] = record
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=why):
        Bundle(copy)


def test_pytorch_reference_holds_the_shipped_int8_tables():
    run = tiny_run("lstm", False, 1, members=2)
    trained = copy.deepcopy(run.model)
    stored, entry = stored_model(run, log=lambda message: None)
    store_embeddings(trained)  # what rnnonnx bench times: the same tables from the run's weights
    assert all(torch.equal(a.embedding.weight, b.embedding.weight) for a, b in zip(trained.members, run.model.members))
    graph = onnx.load_from_string(stored).graph
    tensors = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    tables = sorted(name[: -len("/int8")] for name in tensors if name.endswith("/int8"))
    assert len(tables) == 2
    weights = [m.embedding.weight.detach().numpy() for m in run.model.members]
    for name in tables:
        shipped = tensors[f"{name}/int8"].astype(np.float32) * tensors[f"{name}/row_scale"]
        assert any(np.array_equal(shipped, w) for w in weights)
    assert "int8" in entry["method"]
    ids = np.array([[3, 4, 5, 0], [7, 8, 9, 10]], dtype=np.int64)

    with torch.no_grad():
        expected = ExportWrapper(run.model).eval()(torch.from_numpy(ids))[1].numpy()
    got = session_for(stored).run(["probabilities"], {"input_ids": ids})[0]
    assert np.abs(expected - got).max() <= 1e-6


@pytest.mark.parametrize("exact", [False, True], ids=["hashed", "exact"])
def test_the_linear_members_table_is_int8_too(exact):
    from tests.test_fastgraph import with_linear_member

    run = tiny_run("lstm", False, 1, "last", 2)
    with_linear_member(run, exact)
    table = run.model.linear.table.weight.detach().clone()
    stored, _ = stored_model(run, log=lambda message: None)
    graph = onnx.load_from_string(stored).graph
    tensors = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shipped = tensors["linear.table.weight/int8"].astype(np.float32) * tensors["linear.table.weight/row_scale"]
    assert np.array_equal(shipped, run.model.linear.table.weight.detach().numpy())  # the reference holds them
    assert np.abs(shipped - table.numpy()).max() <= np.abs(table.numpy()).max() / 127
    ids = np.array([[3, 4, 5, 0, 0, 0], [7, 8, 9, 10, 3, 4]], dtype=np.int64)
    with torch.no_grad():
        expected = ExportWrapper(run.model).eval()(torch.from_numpy(ids))[1].numpy()
    got = session_for(stored).run(["probabilities"], {"input_ids": ids})[0]
    assert np.abs(expected - got).max() <= 1e-6


def test_share_weights_keeps_what_no_host_holds_and_reads_back_byte_for_byte():
    run = tiny_run("gru", False, 1)
    model_bytes = to_onnx(run)
    model = onnx.load_from_string(model_bytes)
    big = [i for i in model.graph.initializer if len(i.raw_data) >= EXTERNAL_MIN_BYTES]
    host = b"header" + big[0].raw_data + b"trailer"
    shared = share_weights(model_bytes, {"host.bin": host})
    assert external_files(shared) == {"host.bin": len(big[0].raw_data)}
    assert external_tensors(onnx.load_from_string(shared)) == {
        big[0].name: {"location": "host.bin", "offset": "6", "length": str(len(big[0].raw_data))}
    }
    assert resolve(shared, {"host.bin": host}) == model_bytes
    assert share_weights(model_bytes, {}) == model_bytes


def test_a_multi_label_bundle_scores_its_stored_tables_by_micro_f1(tiny_multilabel_run, tiny_multilabel_bundle):
    from rnnonnx.multilabel import multi_hot, scores
    from rnnonnx.run import load_run

    entry = json.loads((tiny_multilabel_bundle / "manifest.json").read_text())["storage"]
    run = load_run(tiny_multilabel_run)
    texts, gold = run.held_out("validation")
    predictor = Predictor(tiny_multilabel_bundle, graph="ids")
    expected = scores(predictor.predict_proba(texts), multi_hot(gold, run.labels)[0], run.config["thresholds"])["micro_f1"]
    assert "validation_accuracy" not in entry
    assert entry["validation_micro_f1"]["stored"] == pytest.approx(expected, abs=1e-9)
    assert entry["validation_micro_f1"]["rows"] == len(texts)
    assert entry["validation_micro_f1"]["trained_on"] is (run.metrics.refit is not None)


def test_the_storage_check_says_when_the_refit_trained_on_its_rows(tiny_bundle, tmp_path):
    from rnnonnx.config import TrainConfig
    from rnnonnx.exporting import export_run
    from rnnonnx.training import train_run
    from tests.conftest import small_sample

    assert json.loads((tiny_bundle / "manifest.json").read_text())["storage"]["validation_accuracy"]["trained_on"] is False
    config = TrainConfig(embed_dim=8, hidden=8, epochs=1, max_len=16, members=1, refit=True, linear_weight=0)
    train_run(config, tmp_path / "run", small_sample(120), progress=False)
    lines: list[str] = []
    export_run(tmp_path / "run", tmp_path / "bundle", log=lines.append)
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["storage"]["validation_accuracy"]["trained_on"] is True
    assert any(line.startswith("storage:") and line.endswith("on validation rows the refit trained on") for line in lines)

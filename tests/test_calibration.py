"""Calibration: ECE/Brier by hand, the temperature fit, the temperature in the model, the ONNX
graph and the run, and what evaluate reports."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from rnnonnx import calibration
from rnnonnx.config import ModelConfig, TrainConfig
from rnnonnx.data import LabelledTexts
from rnnonnx.errors import RnnonnxError
from rnnonnx.evaluation import evaluate
from rnnonnx.exporting import parity, passed, session_for, synthetic_batches, to_onnx
from rnnonnx.model import build_model, set_temperature
from rnnonnx.run import load_run
from rnnonnx.training import logits_of
from rnnonnx.training import train_run as train
from tests.conftest import small_sample
from tests.test_exporting import tiny_run as synthetic_run


def test_ece_brier_and_reliability_by_hand():
    # Top probabilities 0.9, 0.9, 0.6, 0.55 (bins 13, 13, 8, 8 of 15); right, wrong, right, right.
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.45, 0.55]])
    true = np.array([0, 0, 0, 1])
    table = calibration.reliability(proba, true)
    assert table.counts.tolist() == [0] * 8 + [2] + [0] * 4 + [2, 0]
    assert table.confidence[8] == pytest.approx(0.575) and table.accuracy[8] == 1.0
    assert table.confidence[13] == pytest.approx(0.9) and table.accuracy[13] == 0.5
    assert calibration.ece(proba, true) == pytest.approx((2 * 0.425 + 2 * 0.4) / 4)
    # Brier: (0.01 + 0.01) + (0.81 + 0.81) + (0.16 + 0.16) + (0.2025 + 0.2025), over 4 rows.
    assert calibration.brier(proba, true) == pytest.approx((0.02 + 1.62 + 0.32 + 0.405) / 4)
    assert calibration.brier(np.eye(3), np.arange(3)) == 0.0 and calibration.ece(np.eye(3), np.arange(3)) == 0.0


def test_bin_edges_are_right_closed():
    # Bin b holds (b/15, (b+1)/15]: 1/15 is in the first bin, a hair above it in the second.
    top = np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 0.5, 14 / 15 + 1e-9, 1.0])
    assert calibration._bin_of(top, 15).tolist() == [0, 0, 1, 7, 14, 14]


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 4))
    for true_t in (0.5, 2.0):
        probabilities = calibration.softmax(logits / true_t)
        labels = np.array([rng.choice(4, p=row) for row in probabilities])
        fitted = calibration.fit_temperature(logits, labels)
        assert fitted == pytest.approx(true_t, rel=0.05)
        best = calibration.nll(logits, labels, fitted)
        assert best <= calibration.nll(logits, labels, fitted * 1.01) and best <= calibration.nll(logits, labels, fitted / 1.01)


def test_a_perfectly_separated_validation_set_stops_at_the_lower_bound():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    assert calibration.fit_temperature(logits, np.array([0, 1, 0])) == pytest.approx(calibration.MIN_TEMPERATURE, rel=1e-6)
    with pytest.raises(ValueError, match="no rows"):
        calibration.fit_temperature(np.zeros((0, 2)), np.zeros(0))


def test_the_record_keeps_accuracy_and_lowers_nll():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, size=(500, 3))
    true = np.where(rng.random(500) < 0.6, logits.argmax(axis=1), rng.integers(0, 3, 500))  # over-confident logits
    t = calibration.fit_temperature(logits, true)
    record = calibration.record(t, {"validation": (logits, true), "test": (logits[:0], true[:0])})
    assert t > 1 and "test" not in record and record["ece_bins"] == 15
    before, after = record["validation"]["before"], record["validation"]["after"]
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]
    assert (calibration.softmax(logits / t).argmax(1) == logits.argmax(1)).all()


@pytest.mark.parametrize("members", [1, 3])
def test_the_temperature_divides_the_models_logits_once(members):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=30,
        num_classes=3,
        arch="gru",
        embed_dim=8,
        hidden=6,
        layers=1,
        bidirectional=False,
        dropout=0.0,
        members=members,
    )
    model = build_model(config).eval()
    ids = torch.randint(1, 30, (5, 7))
    with torch.no_grad():
        raw = model(ids)
        set_temperature(model, 2.5)
        scaled = model(ids)
    assert torch.allclose(scaled, raw / 2.5, atol=1e-6)
    assert model.config.temperature == 2.5
    if members > 1:
        assert all(m.config.temperature == 1.0 for m in model.members)
    rebuilt = build_model(model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt(ids), scaled, atol=1e-6)
    with pytest.raises(RnnonnxError, match="temperature must be"):
        ModelConfig(**(config.to_dict() | {"temperature": 0.0}))


@pytest.mark.parametrize(("arch", "members", "temperature"), [("lstm", 1, 2.5), ("gru", 3, 0.4), ("rnn", 2, 7.0)])
def test_export_folds_the_temperature_into_the_graph_within_parity(arch, members, temperature):
    run = synthetic_run(arch, False, 1, "last", members)
    plain = Counter(n.op_type for n in onnx.load_from_string(to_onnx(run)).graph.node)
    ids = next(iter(synthetic_batches(40, 12)))
    with torch.no_grad():
        raw = run.model(torch.from_numpy(ids)).double().numpy()
    set_temperature(run.model, temperature)
    model_bytes = to_onnx(run)
    scaled = Counter(n.op_type for n in onnx.load_from_string(model_bytes).graph.node)
    assert (
        (scaled - plain)["Div"] == 1 and set(scaled - plain) <= {"Div", "Constant"} and not plain - scaled
    )  # one Div, nothing else
    session = session_for(model_bytes)
    reports = parity(run, session)
    assert passed(reports) and reports["synthetic"].max_abs_diff <= 1e-5
    got = session.run(["probabilities"], {"input_ids": ids})[0]
    assert np.abs(got - calibration.softmax(raw / temperature)).max() <= 1e-5
    assert np.abs(got - calibration.softmax(raw)).max() > 1e-3, "the temperature changed nothing"


def test_a_run_is_calibrated_and_its_bundle_reproduces_the_calibrated_scores(tiny_run, tiny_bundle):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    record = metrics["calibration"]
    config = json.loads((tiny_run / "config.json").read_text())
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    t = record["temperature"]
    assert (
        config["model"]["temperature"]
        == t
        == manifest["model"]["temperature"]
        == manifest["training"]["calibration"]["temperature"]
    )
    assert config["training"]["calibrate"] is True
    assert {"validation", "test"} <= set(record) and record["test"]["rows"] == 40
    # The loaded run carries the temperature: its test logits give the recorded "after" figures.
    run = load_run(tiny_run)
    texts, labels = run.held_out("test")
    true = np.array([run.labels.index(y) for y in labels])
    logits = logits_of(run.model, torch.from_numpy(run.tokenizer.encode_batch(texts)), torch.device("cpu")).numpy()
    assert calibration.ece(calibration.softmax(logits), true) == pytest.approx(record["test"]["after"]["ece"], abs=1e-6)
    assert calibration.ece(calibration.softmax(logits * t), true) == pytest.approx(record["test"]["before"]["ece"], abs=1e-6)
    # The bundle (ONNX Runtime, predictor side) scores the same test rows to the figures of the
    # PyTorch model holding the tables it ships (int8 rows), and close to the run's fp32 record.
    from rnnonnx.exporting import stored_model

    stored_model(run, lambda message: None)
    ids = torch.from_numpy(run.tokenizer.encode_batch(texts))
    shipped = calibration.softmax(logits_of(run.model, ids, torch.device("cpu")).numpy())
    result = evaluate(tiny_bundle, run_dir=tiny_run, device="cpu")
    scored = result.calibration()
    assert scored["ece"] == pytest.approx(calibration.ece(shipped, true), abs=1e-5)
    assert scored["brier"] == pytest.approx(calibration.brier(shipped, true), abs=1e-5)
    assert scored["ece"] == pytest.approx(record["test"]["after"]["ece"], abs=2e-3)
    assert scored["temperature"] == t and scored["at_training"]["test"] == record["test"]
    table = result.table()
    assert f"temperature {t:.3f}" in table and "at training, 40 test rows: ECE" in table
    assert json.loads(result.to_json())["calibration"]["ece_bins"] == 15


def test_no_calibrate_and_too_little_data_leave_the_temperature_at_one(tmp_path, capsys):
    fast = dict(embed_dim=8, hidden=8, max_len=16, members=1, epochs=1)
    metrics = train(TrainConfig(calibrate=False, **fast), tmp_path / "off", small_sample(120), progress=False)
    assert metrics.calibration is None and "calibration" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert load_run(tmp_path / "off").model.config.temperature == 1.0
    texts = [
        "I love this product",
        "This is a bad product",
        "I am happy with this purchase",
        "I am disappointed with this purchase",
    ]
    four = LabelledTexts(texts, ["0", "1", "0", "1"], "four")
    metrics = train(TrainConfig(**fast), tmp_path / "four", four, progress=False)
    assert metrics.validation_is_train and metrics.calibration is None
    assert "no calibration: the validation rows are the training rows" in capsys.readouterr().err


def test_calibrate_must_be_a_flag():
    with pytest.raises(RnnonnxError, match="calibrate must be true or false"):
        TrainConfig(calibrate="yes")


def test_a_foreign_calibration_record_in_a_manifest_is_ignored():
    from rnnonnx.evaluation import _calibration_record

    assert _calibration_record({"model": {"temperature": "hot"}, "training": {"calibration": {"test": {"rows": 3}}}}) == (
        None,
        None,
    )
    assert _calibration_record({}) == (1.0, None)
    assert math.isnan(calibration.ece(np.zeros((0, 2)), np.zeros(0)))

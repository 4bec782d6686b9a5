"""Fixed int8 ranges: the sentinel units and columns change nothing the layer computes, their
outputs are exactly +1 and -1 at every step, and with them ONNX Runtime's int8 LSTM gives a text
the same result alone or in any batch (and does not without them); graphs of another shape are
left alone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from rnnonnx.exporting import direct_onnx, session_for, to_onnx
from rnnonnx.pinning import pin_lstm_ranges
from rnnonnx.quantize import (
    BATCH_INDEPENDENCE_BOUND,
    KERNEL_BATCH_BOUND,
    RANGES_BATCH,
    RANGES_FIXED,
    quantize_int8,
    quantize_kernels,
    quantize_twin,
)
from tests.test_exporting import tiny_run
from tests.test_model import BAGS, MATRIX

SHAPES = [(False, 1, 3), (True, 1, 1), (True, 2, 2), (False, 2, 1)]


def _rows(count: int = 60, seed: int = 0) -> list[np.ndarray]:
    """Id rows of lengths 1 to 12 (the tiny runs' max_len), without padding."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 40, size=int(rng.integers(1, 13)), dtype=np.int64) for _ in range(count)]


def _batch(rows: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _moved(session, rows: list[np.ndarray]) -> float:
    """Max |difference| of a row's probabilities alone and in batches of 7 and of all rows, shuffled."""

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(["probabilities"], {"input_ids": batch})[0]

    alone = np.concatenate([run(row[None, :]) for row in rows])
    order = np.random.default_rng(1).permutation(len(rows))
    by_seven = np.zeros_like(alone)
    for start in range(0, len(rows), 7):
        chosen = order[start : start + 7]
        by_seven[chosen] = run(_batch([rows[i] for i in chosen]))
    return max(float(np.abs(alone - by_seven).max()), float(np.abs(alone - run(_batch(rows))).max()))


@pytest.mark.parametrize(("bidirectional", "layers", "members"), SHAPES)
def test_sentinels_change_nothing_the_layers_compute(bidirectional, layers, members):
    stored = quantize_int8(direct_onnx(tiny_run("lstm", bidirectional, layers, "last", members)))[0]
    pinned = onnx.load_from_string(stored)
    assert pin_lstm_ranges(pinned)
    onnx.checker.check_model(pinned, full_check=True)
    lstms = [n for n in pinned.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == layers * members and all(len(n.input) == 7 for n in lstms)
    before, after = session_for(stored), session_for(pinned.SerializeToString())
    for rows in (_rows(), _rows(5, seed=2)):
        batch = _batch(rows)
        expected = before.run(["probabilities"], {"input_ids": batch})[0]
        assert np.abs(after.run(["probabilities"], {"input_ids": batch})[0] - expected).max() <= 1e-6


def test_sentinel_units_are_exactly_plus_and_minus_one_at_every_step():
    pinned = onnx.load_from_string(quantize_int8(direct_onnx(tiny_run("lstm", True, 2, "last", 1)))[0])
    assert pin_lstm_ranges(pinned)
    hidden = tiny_run("lstm", True, 2, "last", 1).model.config.hidden
    lstms = [n for n in pinned.graph.node if n.op_type == "LSTM"]
    for name in (lstms[0].output[0], lstms[1].output[1]):  # the first layer's Y, the last layer's Y_h
        pinned.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = session_for(pinned.SerializeToString())
    rows = [np.arange(1, 13, dtype=np.int64), np.arange(5, 9, dtype=np.int64)]
    y, y_h = session.run([lstms[0].output[0], lstms[1].output[1]], {"input_ids": _batch(rows)})
    assert y.shape[-1] == y_h.shape[-1] == hidden + 2
    for row, length in enumerate(len(r) for r in rows):
        steps = y[:length, :, row, hidden:]  # [steps, directions, 2]
        assert (steps[..., 0] == 1.0).all() and (steps[..., 1] == -1.0).all()
    assert (y_h[..., hidden] == 1.0).all() and (y_h[..., hidden + 1] == -1.0).all()
    assert np.abs(y[..., :hidden]).max() < 1.0


@pytest.mark.parametrize(("bidirectional", "layers", "members"), SHAPES)
def test_fixed_ranges_make_int8_results_independent_of_the_batch(bidirectional, layers, members):
    fp32 = direct_onnx(tiny_run("lstm", bidirectional, layers, "last", members))
    pinned, report = quantize_kernels(fp32)
    loose, loose_report = quantize_kernels(fp32, pin=False)
    assert report["ranges"] == RANGES_FIXED and loose_report["ranges"] == RANGES_BATCH
    assert "DynamicQuantizeLSTM" in {n.op_type for n in onnx.load_from_string(pinned).graph.node}
    rows = _rows()
    moved, moved_before = _moved(session_for(pinned), rows), _moved(session_for(loose), rows)
    print(f"\nint8 LSTM {bidirectional=} {layers=}: alone vs batched max |dp| {moved:.1e} (batch scales {moved_before:.1e})")
    assert moved <= BATCH_INDEPENDENCE_BOUND < moved_before
    reference = session_for(fp32).run(["probabilities"], {"input_ids": _batch(rows)})[0]
    assert np.abs(session_for(pinned).run(["probabilities"], {"input_ids": _batch(rows)})[0] - reference).max() < 0.05


def test_graphs_of_another_shape_are_left_alone():
    gru = onnx.load_from_string(direct_onnx(tiny_run("gru", False, 1, "last", 1)))
    assert not pin_lstm_ranges(gru)
    clipped = onnx.load_from_string(direct_onnx(tiny_run("lstm", False, 1, "last", 1)))
    next(n for n in clipped.graph.node if n.op_type == "LSTM").attribute.append(helper.make_attribute("clip", 5.0))
    untouched = clipped.SerializeToString()
    assert not pin_lstm_ranges(clipped) and clipped.SerializeToString() == untouched
    report = quantize_twin(untouched)[1]
    assert report["ranges"] == RANGES_BATCH and report["batch_bound"] == KERNEL_BATCH_BOUND
    unbiased = onnx.load_from_string(direct_onnx(tiny_run("lstm", False, 1, "last", 1)))
    del next(n for n in unbiased.graph.node if n.op_type == "LSTM").input[3:]
    assert not pin_lstm_ranges(unbiased)


LSTM_SHAPES = [m[1:] + (1, 0) for m in MATRIX if m[0] == "lstm"] + [m[1:] for m in BAGS if m[0] == "lstm"]


@pytest.mark.parametrize(("bidirectional", "layers", "pooling", "members", "buckets"), LSTM_SHAPES)
def test_every_lstm_shape_export_writes_is_pinned(bidirectional, layers, pooling, members, buckets):
    """Both graphs export writes: the direct one (pooling "last") and the TorchScript export (max or
    concat pooling, a bag-of-n-grams branch), whose layers read a length-sorted, transposed lookup
    and zero initial states."""
    run = tiny_run("lstm", bidirectional, layers, pooling, members, buckets)
    fp32 = quantize_int8(direct_onnx(run) or to_onnx(run))[0]
    pinned = onnx.load_from_string(fp32)
    zeros = {i for n in pinned.graph.node if n.op_type == "LSTM" for i in n.input[5:7] if i}
    assert pin_lstm_ranges(pinned)
    assert not zeros & {o for n in pinned.graph.node for o in n.output}, "the zero states it replaced are gone"
    rows = _rows()
    before, after = session_for(fp32), session_for(pinned.SerializeToString())
    expected = before.run(["probabilities"], {"input_ids": _batch(rows)})[0]
    assert np.abs(after.run(["probabilities"], {"input_ids": _batch(rows)})[0] - expected).max() <= 1e-6
    int8, report = quantize_kernels(fp32)
    assert report["ranges"] == RANGES_FIXED
    assert (
        _moved(session_for(int8), rows)
        <= BATCH_INDEPENDENCE_BOUND
        < _moved(session_for(quantize_kernels(fp32, pin=False)[0]), rows)
    )

"""The int8 twins of ``export --quantize int8``, and int8 embedding tables for every bundle.

The embedding tables, most of a model's bytes, are stored as int8 with one scale per row
(symmetric: ``w = q * scale``); the graph scales the table back to fp32 with standard operators
(``Cast``, ``Mul``) before the ``Gather`` that reads it. That is a constant expression: ONNX Runtime
folds it once, when it loads the model, so memory holds the fp32 table and a call gathers fp32 rows
directly (gathering int8 rows and scaling them at every call cost the default model ~7% of its
one-text latency, ``benchmarks/ensemble_latency.py``). Every bundle's default
graphs store their tables so (:mod:`rnnonnx.storage`), and the int8 twins keep reading them from
the default graph's bytes, so they add little to a bundle.

An LSTM model's twin computes its recurrent layers with ONNX Runtime's int8 kernel
(:func:`quantize_kernels`, ``DynamicQuantizeLSTM``): the layer's weight matrices int8, its inputs
and hidden states quantized to uint8 at run time. That is where the time goes (the recurrent
layer is 70% of a batch's kernel time), and the integer products make the twin faster than fp32
(benchmarks/RESULTS.md). The weights keep to [-64, 64] (the quantizer's ``reduce_range``): x86
CPUs without VNNI add pairs of uint8 x int8 products in int16, which full-range weights overflow
(ONNX Runtime's AVX2 kernel saturates), so a bundle's int8 results would differ between such a
CPU, newer ones and the browser; with 7-bit weights all compute the same integers. The kernel
takes its run-time scales from the matrix it multiplies (all of a batch's steps for the input
product, each thread's share of the batch at every step), which made a text's probabilities move
with its batch company; :mod:`rnnonnx.pinning` fixes those
ranges with sentinel units and columns, so a text's result is the same alone or in any batch, to
float rounding (:data:`BATCH_INDEPENDENCE_BOUND`), for 10-12% of the twin's batch throughput.
Export measures that over the validation texts and writes it to the manifest
(``int8.batch_independence_max_abs_diff``), warning loudly past the bound; a graph the pinning
does not cover keeps the batch's scales and the looser :data:`KERNEL_BATCH_BOUND`. The fp32
graphs stay independent of their batch to float rounding.

ONNX Runtime has no int8 kernel for GRU or RNN layers, so their twins (:func:`quantize_weights`)
store the recurrent and output weight matrices as int8 per output row, scaled back to fp32 by
``Cast``/``Mul`` as the tables are (``DequantizeLinear``, which ONNX Runtime does not fold, cost
one-text calls 15-20%), and compute in fp32: smaller by ~6%, as fast as fp32, and independent of the batch
to float rounding (:data:`BATCH_INDEPENDENCE_BOUND`). ``quantize_static`` fixes the activation
scales, but its registry has no recurrent operator, so the layers that do the arithmetic would
stay fp32 anyway. ``benchmarks/int8_schemes.py`` measures the schemes side by side: accuracy,
batch dependence, size and speed.

Needs onnx and ONNX Runtime's quantization tools (export time only); the predictor just loads the
files written here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .bundle import IDS_INPUT, PROBABILITIES
from .text import Tokenizer

QUANTIZE_CHOICES = ("int8",)
# How many points of validation accuracy int8 may lose before export warns loudly.
MAX_ACCURACY_DROP = 1.0
# A text's probabilities alone and in any batch agree within this in a weight-only twin or one with
# fixed ranges: float rounding, as in fp32 (whose own figure reaches 1.9e-6 on the suite's long
# documents, sums over thousands of tokens taken in another order; benchmarks/int8_suite.py).
BATCH_INDEPENDENCE_BOUND = 1e-5
# ... and within this in a twin with ONNX Runtime's int8 LSTM kernel whose run-time scales come from
# the batch (a graph rnnonnx.pinning does not cover; about 0.01 on the default model).
KERNEL_BATCH_BOUND = 0.05
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
INT8_LSTM = "DynamicQuantizeLSTM"
METHOD = (
    "weight-only int8: embedding tables stored as int8 with one fp32 scale per row (symmetric), scaled back "
    "to fp32 in the graph (folded at load); recurrent and output layers and all "
    "activations fp32, so no scale depends on the batch"
)

METHOD_KERNELS = (
    "ONNX Runtime's int8 LSTM kernel (DynamicQuantizeLSTM): recurrent weight matrices int8 in [-64, 64] (one scale "
    "per matrix, 7 bits so that no CPU's 16-bit pair sums overflow), "
    "the layer's inputs and hidden states quantized to uint8 at run time (see ranges); embedding "
    "tables int8 with one fp32 scale per row, scaled back to fp32 (folded at load); everything else fp32"
)

RANGES_FIXED = (
    "fixed: two sentinel hidden units per layer (outputs +1 and -1) and two constant input columns (+- the largest "
    "value the layer's input can take) pin every run-time scale, so a text's result does not depend on its batch"
)
RANGES_BATCH = "from the batch: a text's result moves a little with the texts batched with it"

METHOD_WEIGHTS = (
    "weight-only int8: embedding tables, recurrent and output weight matrices stored as int8 with one fp32 scale per "
    "(output) row (symmetric), scaled back to fp32 in the graph (Cast/Mul, folded at load); all arithmetic "
    "and activations fp32, so no scale depends on the batch"
)


def row_quantize(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``table`` [rows, columns] as int8 and one scale per row, ``table ~ q * scale``; an all-zero
    row (the padding embedding) gets scale 1 and stays exactly zero."""
    table = np.asarray(table, dtype=np.float32)
    peak = np.abs(table).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _embedding_tables(graph: Any) -> dict[str, Any]:
    """Float 2-D initializers read only as the data of axis-0 ``Gather`` nodes: the embedding tables
    (not the row scales of tables already int8)."""
    from onnx import TensorProto

    initializers = {
        i.name: i
        for i in graph.initializer
        if i.data_type == TensorProto.FLOAT and len(i.dims) == 2 and not i.name.endswith("/row_scale")
    }
    uses: dict[str, list[bool]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in initializers:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                uses.setdefault(name, []).append(node.op_type == "Gather" and position == 0 and axis == 0)
    return {name: initializers[name] for name, gathers in uses.items() if all(gathers)}


def _store_int8(graph: Any, name: str, axis: int, scale_name: str) -> list[Any]:
    """Replace the float initializer ``name`` of ``graph`` by ``name/int8`` (symmetric, one scale
    per index along ``axis``) and its scales ``name/<scale_name>`` (shaped to broadcast), and return
    the nodes that compute ``name`` back from them: ``Cast`` then ``Mul``, a constant expression
    ONNX Runtime folds once, at load (``DequantizeLinear`` it would run at every call)."""
    from onnx import TensorProto, helper, numpy_helper

    initializer = next(i for i in graph.initializer if i.name == name)
    weights = numpy_helper.to_array(initializer)
    rows = np.moveaxis(weights, axis, 0)
    q, scale = row_quantize(rows.reshape(rows.shape[0], -1))
    shape = [1] * weights.ndim
    shape[axis] = -1
    graph.initializer.remove(initializer)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.moveaxis(q.reshape(rows.shape), 0, axis), f"{name}/int8"),
            numpy_helper.from_array(scale.reshape(shape), f"{name}/{scale_name}"),
        ]
    )
    return [
        helper.make_node("Cast", [f"{name}/int8"], [f"{name}/float"], name=f"{name}/cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{name}/float", f"{name}/{scale_name}"], [name], name=f"{name}/dequantize"),
    ]


def _prepend(graph: Any, nodes: list[Any]) -> None:
    everything = nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(everything)


def quantize_int8(model_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """The ids graph with int8 embedding tables (per-row scales), and a report of what is int8."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    tables = _embedding_tables(graph)
    if not tables:
        raise ValueError("no embedding table (a float initializer gathered along axis 0) in the graph")
    front = [node for name in tables for node in _store_int8(graph, name, 0, "row_scale")]
    _prepend(graph, front)
    onnx.checker.check_model(model, full_check=True)
    quantized = model.SerializeToString()
    return quantized, describe(onnx.load_from_string(model_bytes), model)


def quantize_twin(model_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """The int8 twin of a bundle's graph: ONNX Runtime's int8 kernel for a model with LSTM layers
    (:func:`quantize_kernels`), weight-only int8 otherwise (:func:`quantize_weights`); the report
    says which, and the batch dependence the twin is held to (``batch_bound``)."""
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(model_bytes).graph.node}
    if "LSTM" in ops:
        quantized, report = quantize_kernels(model_bytes)
        fixed = report["ranges"] == RANGES_FIXED
        return quantized, report | {"batch_bound": BATCH_INDEPENDENCE_BOUND if fixed else KERNEL_BATCH_BOUND}
    quantized, report = quantize_weights(model_bytes)
    return quantized, report | {"batch_bound": BATCH_INDEPENDENCE_BOUND}


def quantize_kernels(model_bytes: bytes, pin: bool = True) -> tuple[bytes, dict[str, Any]]:
    """The graph with every LSTM layer on ONNX Runtime's int8 kernel (``DynamicQuantizeLSTM``,
    weights int8 per matrix, within [-64, 64]) and embedding tables int8 per row (:func:`quantize_int8`, applied here
    when the graph still has fp32 tables); every other operator as it was. With ``pin`` (the
    default), the kernel's activation ranges are fixed where :func:`rnnonnx.pinning.pin_lstm_ranges`
    covers the graph; the report's ``ranges`` says whether they are."""
    import logging
    import tempfile
    from pathlib import Path

    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(model_bytes)
    stored = quantize_int8(model_bytes)[0] if _embedding_tables(model.graph) else model_bytes
    fixed = False
    if pin:
        from .pinning import pin_lstm_ranges

        pinned = onnx.load_from_string(stored)
        fixed = pin_lstm_ranges(pinned)
        if fixed:
            stored = pinned.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="rnnonnx-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(stored)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice for image models on the root logger
        try:
            quantize_dynamic(
                str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"], reduce_range=True
            )
        finally:
            logging.getLogger().setLevel(quiet)
        quantized = onnx.load(str(target))
    raw = [numpy_helper.from_array(numpy_helper.to_array(i), i.name) for i in quantized.graph.initializer]
    del quantized.graph.initializer[:]
    quantized.graph.initializer.extend(raw)  # one tensor layout (raw bytes), as every other graph of the bundle
    onnx.checker.check_model(quantized, full_check=True)
    return quantized.SerializeToString(), describe(model, quantized) | {"ranges": RANGES_FIXED if fixed else RANGES_BATCH}


def quantize_weights(model_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """The int8 twin of a bundle's graph: embedding tables int8 per row as :func:`quantize_int8`
    stores them (applied here when the graph still has fp32 tables), and every recurrent and output
    weight matrix int8 per output row too, scaled back by ``Cast``/``Mul`` (folded at load); arithmetic
    and activations stay fp32, so a text's result still does not depend on its batch."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    if _embedding_tables(model.graph):
        model = onnx.load_from_string(quantize_int8(model_bytes)[0])
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    axes: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in RECURRENT_OPS:
            axes.update({node.input[1]: 1, node.input[2]: 1})
        elif node.op_type == "Gemm" and node.input[1] in initializers:
            axes[node.input[1]] = 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    _prepend(graph, [node for name, axis in axes.items() for node in _store_int8(graph, name, axis, "scale")])
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(), describe(onnx.load_from_string(model_bytes), model)


def describe(fp32: Any, int8: Any) -> dict[str, Any]:
    """What the int8 graph ``int8`` stores in int8 and computes in fp32, from the graphs themselves."""
    from onnx import TensorProto

    before = Counter(n.op_type for n in fp32.graph.node)
    recurrent = next((op for op in RECURRENT_OPS if before[op]), None)
    if recurrent is None:
        raise ValueError(f"no recurrent layer ({', '.join(RECURRENT_OPS)}) in the graph")
    int8_names = {i.name for i in int8.graph.initializer if i.data_type == TensorProto.INT8}
    embedding = any(n.op_type == "Cast" and n.input and n.input[0] in int8_names for n in int8.graph.node)
    cast = {n.output[0] for n in int8.graph.node if n.op_type == "Cast" and n.input[0] in int8_names}
    dequantized = {n.output[0] for n in int8.graph.node if n.op_type == "Mul" and n.input[0] in cast}
    recurrent_int8 = any(n.op_type in RECURRENT_OPS and dequantized & set(n.input[1:3]) for n in int8.graph.node)
    kernels = any(n.op_type == INT8_LSTM for n in int8.graph.node)
    output_int8 = any(n.op_type == "Gemm" and n.input[1] in dequantized for n in int8.graph.node)
    kind = "int8 weights, fp32 arithmetic"
    return {
        "method": METHOD_KERNELS if kernels else METHOD_WEIGHTS if recurrent_int8 else METHOD,
        "layers": {
            "embedding": kind if embedding else "fp32",
            "recurrent": "int8 arithmetic (ONNX Runtime DynamicQuantizeLSTM)" if kernels else kind if recurrent_int8 else "fp32",
            "output": kind if output_int8 else "fp32",
        },
    }


def accuracy(
    session: Any,
    tokenizer: Tokenizer,
    labels: Sequence[str],
    texts: Sequence[str],
    gold: Sequence[Any],
    batch_size: int = 256,
    thresholds: Sequence[float] | None = None,
) -> float | None:
    """How well an ids-graph ``session`` does on labelled texts (``None`` without texts): accuracy
    for a multi-class model; for a multi-label one (``thresholds`` given, ``gold`` label lists)
    micro-F1 at those thresholds, the score its early stopping watched."""
    if not texts:
        return None
    proba = np.concatenate(
        [
            session.run([PROBABILITIES], {IDS_INPUT: tokenizer.encode_batch(texts[start : start + batch_size])})[0]
            for start in range(0, len(texts), batch_size)
        ]
    )
    if thresholds is not None:
        from .multilabel import multi_hot, scores

        return scores(proba, multi_hot(gold, labels)[0], thresholds)["micro_f1"]
    index = {name: i for i, name in enumerate(labels)}
    return float((proba.argmax(axis=1) == np.array([index[g] for g in gold])).mean())


def batch_compositions(count: int, seed: int = 0) -> dict[str, list[list[int]]]:
    """Ways to batch ``count`` texts (row indices per batch): each alone, in order by 64, in
    reverse order by 256, and shuffled by 7: other sizes, other neighbours, other padding."""
    order = list(range(count))
    shuffled = list(np.random.default_rng(seed).permutation(count))
    return {
        "alone": [[i] for i in order],
        "in order, by 64": [order[i : i + 64] for i in range(0, count, 64)],
        "reversed, by 256": [order[::-1][i : i + 256] for i in range(0, count, 256)],
        "shuffled, by 7": [[int(j) for j in shuffled[i : i + 7]] for i in range(0, count, 7)],
    }


def batch_dependence(session: Any, tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, Any]:
    """Max |difference| of each text's probabilities between running it alone and in every
    other composition of :func:`batch_compositions` (each batch right-padded to its longest text)."""
    if not texts:
        return {"max_abs_diff": None, "rows": 0, "compositions": []}
    results = {}
    for name, batches in batch_compositions(len(texts)).items():
        out = np.empty((len(texts), 0))
        for rows in batches:
            proba = session.run([PROBABILITIES], {IDS_INPUT: tokenizer.encode_batch([texts[i] for i in rows])})[0]
            if out.shape[1] == 0:
                out = np.zeros((len(texts), proba.shape[1]))
            out[rows] = proba
        results[name] = out
    alone = results.pop("alone")
    return {
        "max_abs_diff": max(float(np.abs(alone - other).max()) for other in results.values()),
        "rows": len(texts),
        "compositions": ["alone", *results],
    }


def verdict(fp32: float | None, int8: float | None) -> str | None:
    """A warning when int8 loses more than ``MAX_ACCURACY_DROP`` points (or cannot be measured)."""
    if fp32 is None or int8 is None:
        return "no validation rows in the run, so int8 accuracy was not measured: check it before shipping model.int8.onnx"
    drop = 100.0 * (fp32 - int8)
    if drop > MAX_ACCURACY_DROP:
        return (
            f"int8 loses {drop:.2f} points of validation accuracy (fp32 {fp32:.4f}, int8 {int8:.4f}), more than "
            f"{MAX_ACCURACY_DROP:g}: prefer the fp32 model"
        )
    return None

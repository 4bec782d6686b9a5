"""Fixed int8 ranges for ONNX Runtime's int8 LSTM kernel, so that a text's int8 result does not
depend on the texts batched with it.

``DynamicQuantizeLSTM`` quantizes a layer's inputs and hidden states to uint8 at run time, with a
scale and zero point taken from the minimum and maximum of the matrix it multiplies: all of a
batch's steps for the input product, each thread's share of the batch's rows at every step for
the recurrent one (onnxruntime's ``rnn_helpers`` ``ComputeGemm``, ``GetQuantizationParameter``).
So a text's probabilities moved with its company (about 0.01 on the default model). Here those
minima and maxima become the same in every batch, with standard operators and without changing
what the layer computes:

- Two sentinel hidden units per direction, whose gates are saturated by their biases alone (no
  weight reads them or is read by them) and whose cells start at +-``CELL_START``: their outputs
  are +1 and -1 at every step, the bounds of any LSTM hidden state, so every row of the batch pins
  the recurrent range to [-1, 1].
- Two constant input columns, +M and -M, M the largest |value| the layer's input can take: the
  embedding table's largest entry for a first layer, 1 for a layer reading hidden states. Where
  only the layer reads the lookup (the direct graph), the table itself is widened by a constant
  expression ONNX Runtime folds at load, so no call pays for it; a stacked layer of the direct
  graph reads the previous layer's outputs with their sentinels already in place; elsewhere (the
  TorchScript export, whose lookup other operators read too) the columns are appended at run time.

The layers' outputs are sliced back to the real units before anything else reads them. Both the
direct ids graph (:mod:`rnnonnx.fastgraph`) and the TorchScript export (``pooling="max"`` or
``"concat"``, a bag-of-n-grams branch) are covered; graphs of another shape (nonzero initial
states, peepholes, clipping, an input that is neither a table lookup nor the previous layer) are
left alone, and their twins keep the batch-dependent scales. The price is two more hidden
units per layer: 10-12% of the default model's int8 batch throughput (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

SENTINELS = 2
# A gate pre-activation that ONNX Runtime's sigmoid and tanh cannot tell from infinity.
SATURATED = 30.0
# The sentinels' starting cell: tanh of it, and of everything it grows to, is 1.0 in float32.
CELL_START = 20.0
# ONNX's gate order within LSTM weights: input, output, forget, cell.
GATES = 4
CELL_GATE = 3


def _constant(graph: Any, name: str, producers: dict[str, Any]) -> np.ndarray | None:
    """The value of ``name`` when it is an initializer, a ``Constant``, or a ``Cast``/``Mul`` of
    those (an int8 table scaled back, :func:`rnnonnx.quantize._store_int8`), else ``None``."""
    from onnx import helper, numpy_helper

    initializer = next((i for i in graph.initializer if i.name == name), None)
    if initializer is not None:
        return numpy_helper.to_array(initializer)
    node = producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    if node is None or node.op_type not in ("Cast", "Mul"):
        return None
    values = [_constant(graph, i, producers) for i in node.input]
    if any(v is None for v in values):
        return None
    if node.op_type == "Cast":
        to = next(a.i for a in node.attribute if a.name == "to")
        return values[0].astype(helper.tensor_dtype_to_np_dtype(to))
    return values[0] * values[1]


def _zero(name: str, producers: dict[str, Any]) -> bool:
    """Whether ``name`` is all zeros by construction: a ``ConstantOfShape`` of zero (the initial
    states the TorchScript exporter writes), reshaped, sliced or expanded."""
    from onnx import numpy_helper

    node = producers.get(name)
    while node is not None and node.op_type in ("Slice", "Reshape", "Squeeze", "Unsqueeze", "Expand", "Identity"):
        node = producers.get(node.input[0])
    if node is None or node.op_type != "ConstantOfShape":
        return False
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    return value is None or not numpy_helper.to_array(value).any()


def _plain(node: Any, producers: dict[str, Any]) -> bool:
    """An LSTM with default activations, no clipping or peepholes, and zero initial states (or none)."""
    extra = [a.name for a in node.attribute if a.name not in ("hidden_size", "direction", "layout")]
    layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
    states = [name for name in node.input[5:7] if name]
    return not extra and layout == 0 and not any(node.input[7:]) and all(_zero(name, producers) for name in states)


def _widen_gates(matrix: np.ndarray, hidden: int, fill: np.ndarray | None = None) -> np.ndarray:
    """[D, k * 4H, ...] -> [D, k * 4(H + 2), ...]: each gate block gains the sentinels' rows."""
    directions, rest = matrix.shape[0], matrix.shape[2:]
    blocks = matrix.reshape(directions, -1, hidden, *rest)
    pad = np.zeros((directions, blocks.shape[1], SENTINELS, *rest), dtype=matrix.dtype) if fill is None else fill
    return np.concatenate([blocks, pad], axis=2).reshape(directions, -1, *rest)


def _widen_inputs(matrix: np.ndarray, groups: int) -> np.ndarray:
    """[..., groups * n] -> [..., groups * (n + 2)]: zero weights for the sentinel columns each of
    ``groups`` concatenated inputs (a table's columns, or each direction of the previous layer) gains."""
    split = matrix.reshape(*matrix.shape[:-1], groups, -1)
    pad = np.zeros((*split.shape[:-1], SENTINELS), dtype=matrix.dtype)
    return np.concatenate([split, pad], axis=-1).reshape(*matrix.shape[:-1], -1)


def _sentinel_bias(directions: int) -> np.ndarray:
    """The sentinels' biases [D, 2 (input, recurrent), 4 gates, 2 units]: every gate open, the
    cell candidate +1 for the first unit and -1 for the second."""
    bias = np.zeros((directions, 2, GATES, SENTINELS), dtype=np.float32)
    bias[:, 0, :, :] = SATURATED
    bias[:, 0, CELL_GATE, 1] = -SATURATED
    return bias


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _keeps_last_axis(transpose: Any) -> bool:
    perm = list(_attribute(transpose, "perm", []))  # no perm: every axis reversed
    return bool(perm) and perm[-1] == len(perm) - 1


def _single(name: str, consumers: dict[str, list[Any]]) -> bool:
    return len(consumers[name]) == 1


# Operators that only move values: a bound on their (first) input bounds their output.
MOVERS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Identity", "Gather")


def _bounded(graph: Any, x: str, producers: dict[str, Any]) -> tuple[str, None, float] | None:
    """``("bounded", None, M)`` when every value of the layer input ``x`` lies in [-M, M]: values moved
    from an embedding table (M its largest |entry|) or from an LSTM's hidden states (M = 1)."""
    node = producers.get(x)
    name = x
    while node is not None and node.op_type in MOVERS:
        if node.op_type == "Gather" and (table := _constant(graph, node.input[0], producers)) is not None:
            return "bounded", None, float(np.abs(table).max())
        name = node.input[0]
        node = producers.get(name)
    if node is not None and node.op_type == "LSTM" and name in node.output[:2]:
        return "bounded", None, 1.0
    return None


def _lookup(graph: Any, x: str, producers: dict[str, Any], consumers: dict[str, list[Any]]) -> tuple[str, Any, Any] | None:
    """``("table", gather, table)`` when the layer input ``x`` is an embedding lookup, possibly
    reordered along its first axis or transposed with its last axis kept last (the TorchScript
    export sorts a batch by length): the table then bounds every value ``x`` holds."""
    node = producers.get(x)
    while node is not None and _single(node.output[0], consumers):
        if node.op_type == "Gather" and _attribute(node, "axis", 0) == 0:
            table = _constant(graph, node.input[0], producers)
            if table is not None:
                return ("table", node, table) if table.ndim == 2 else None
        elif node.op_type != "Transpose" or not _keeps_last_axis(node):
            return None
        node = producers.get(node.input[0])
    return None


def _stacked(x: str, producers: dict[str, Any], consumers: dict[str, list[Any]]) -> tuple[str, Any, int] | None:
    """``("stacked", lower, groups)`` when the layer input ``x`` is the previous LSTM layer's
    ``Y`` [T, D, B, H] with its directions laid side by side: ``Reshape(Transpose(Y, [0, 2, 1, 3]))``
    (``groups`` = D) or, one direction, ``Squeeze(Y, 1)`` (``groups`` = 1). The lower layer's
    sentinels then arrive as columns of ``x`` and pin its range to [-1, 1]."""
    source = producers.get(x)
    if source is None or not _single(x, consumers):
        return None
    if source.op_type == "Squeeze":
        lower = producers.get(source.input[0])
        groups = 1
    elif source.op_type == "Reshape":
        moved = producers.get(source.input[0])
        if moved is None or moved.op_type != "Transpose" or list(_attribute(moved, "perm", [])) != [0, 2, 1, 3]:
            return None
        if not _single(moved.output[0], consumers):
            return None
        lower = producers.get(moved.input[0])
        groups = 2 if lower is not None and _attribute(lower, "direction", b"forward") == b"bidirectional" else 1
        source = moved
    else:
        return None
    if lower is None or lower.op_type != "LSTM" or source.input[0] != lower.output[0] or not _single(lower.output[0], consumers):
        return None
    return "stacked", lower, groups


def pin_lstm_ranges(model: Any) -> bool:
    """Give every LSTM of ``model`` (an ``onnx.ModelProto``, edited in place) sentinel units and
    input columns that fix its int8 kernel's ranges; ``False``, and the model untouched, when a
    layer has a shape this does not cover."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    names = [n.name for n in graph.node]
    if not lstms or not all(_plain(n, producers) for n in lstms) or "" in names or len(set(names)) < len(names):
        return False
    initializers = {i.name: i for i in graph.initializer}
    if not all(len(n.input) > 3 and all(name in initializers for name in n.input[1:4]) for n in lstms):
        return False  # weights or biases computed in the graph, or no biases to saturate the sentinels with
    plans = {}
    for node in lstms:
        x = node.input[0]
        plan = _lookup(graph, x, producers, consumers) or _stacked(x, producers, consumers) or _bounded(graph, x, producers)
        if plan is None:
            return False
        plans[node.name] = plan

    before: dict[str, list[Any]] = defaultdict(list)
    after: dict[str, list[Any]] = defaultdict(list)
    stacked_below = {plan[1].name for plan in plans.values() if plan[0] == "stacked"}
    graph_outputs = {o.name for o in graph.output}

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    made: dict[tuple[str, int, int], str] = {}

    def initial_cells(node: Any, directions: int, hidden: int) -> str:
        """initial_c [D, batch, H + 2]: zero for the real units, +-CELL_START for the sentinels, so
        their outputs are +-1 from the first step on (no initial_h is needed: the first step's
        recurrent product reads zeros in every row, a range no batch changes); built once per
        batch source and layer shape, before the first layer reading it."""
        lengths = node.input[4] if len(node.input) > 4 and node.input[4] else ""
        key = (lengths or node.input[0], directions, hidden)
        if key not in made:
            prefix = f"pinned/{len(made)}"
            start = np.zeros((directions, 1, hidden + SENTINELS), dtype=np.float32)
            start[..., hidden:] = [CELL_START, -CELL_START]
            batch = (
                helper.make_node("Shape", [lengths], [f"{prefix}/batch"], name=f"{prefix}/batch")
                if lengths
                else helper.make_node("Shape", [node.input[0]], [f"{prefix}/batch"], name=f"{prefix}/batch", start=1, end=2)
            )
            outer = const(f"{prefix}/directions", np.array([directions], dtype=np.int64))
            inner = const(f"{prefix}/units", np.array([hidden + SENTINELS], dtype=np.int64))
            dims = helper.make_node(
                "Concat", [outer, batch.output[0], inner], [f"{prefix}/state_shape"], name=f"{prefix}/state_shape", axis=0
            )
            cells = helper.make_node(
                "Expand",
                [const(f"{prefix}/initial_c0", start), dims.output[0]],
                [f"{prefix}/initial_c"],
                name=f"{prefix}/initial_c",
            )
            before[node.name] += [batch, dims, cells]
            made[key] = cells.output[0]
        return made[key]

    def pin_columns(node: Any, bound: float) -> list[Any]:
        """Nodes that append the columns +bound and -bound to the layer input at every step and row."""
        prefix = f"{node.name}/pinned"
        columns = const(f"{prefix}/columns", np.array([[[bound, -bound]]], dtype=np.float32))
        two = const(f"{prefix}/two", np.array([SENTINELS], dtype=np.int64))
        steps_rows = helper.make_node(
            "Shape", [node.input[0]], [f"{prefix}/steps_rows"], name=f"{prefix}/steps_rows", start=0, end=2
        )
        shape = helper.make_node(
            "Concat", [steps_rows.output[0], two], [f"{prefix}/columns_shape"], name=f"{prefix}/columns_shape", axis=0
        )
        filled = helper.make_node("Expand", [columns, shape.output[0]], [f"{prefix}/filled"], name=f"{prefix}/filled")
        joined = helper.make_node("Concat", [node.input[0], filled.output[0]], [f"{prefix}/x"], name=f"{prefix}/x", axis=2)
        node.input[0] = joined.output[0]
        return [steps_rows, shape, filled, joined]

    for node in lstms:
        hidden = _attribute(node, "hidden_size", 0)
        kind, source, detail = plans[node.name]
        prefix = f"{node.name}/pinned"
        w, r, b = (numpy_helper.to_array(initializers[node.input[i]]) for i in (1, 2, 3))
        directions = w.shape[0]
        if kind == "table":
            peak = np.float32(np.abs(detail).max())
            columns = const(f"{prefix}/columns", np.array([[peak, -peak]], dtype=np.float32))
            shape = const(f"{prefix}/table_shape", np.array([detail.shape[0], SENTINELS], dtype=np.int64))
            filled = helper.make_node("Expand", [columns, shape], [f"{prefix}/table_columns"], name=f"{prefix}/table_columns")
            widened = helper.make_node(
                "Concat", [source.input[0], filled.output[0]], [f"{prefix}/table"], name=f"{prefix}/table", axis=1
            )
            before[source.name] += [filled, widened]
            source.input[0] = widened.output[0]
            w = _widen_inputs(w, 1)
        elif kind == "stacked":
            w = _widen_inputs(w, detail)
        else:
            before[node.name] += pin_columns(node, detail)
            w = _widen_inputs(w, 1)
        w = _widen_gates(w, hidden)
        r = _widen_inputs(_widen_gates(r, hidden), 1)
        b = _widen_gates(b, hidden, _sentinel_bias(directions).reshape(directions, 2 * GATES, SENTINELS))
        for position, value in zip((1, 2, 3), (w, r, b), strict=True):
            node.input[position] = const(f"{prefix}/{('W', 'R', 'B')[position - 1]}", value.astype(np.float32))

        cells = initial_cells(node, directions, hidden)
        inputs = list(node.input[:5]) + [""] * (5 - len(node.input))
        del node.input[:]
        node.input.extend([*inputs, "", cells])
        for a in node.attribute:
            if a.name == "hidden_size":
                a.i = hidden + SENTINELS

        for position, output in enumerate(node.output):
            read = consumers[output] or output in graph_outputs
            if not output or not read or (position == 0 and node.name in stacked_below):
                continue
            kept = const(f"{prefix}/{position}/ends", np.array([hidden], dtype=np.int64))
            zero = const(f"{prefix}/{position}/starts", np.array([0], dtype=np.int64))
            axis = const(f"{prefix}/{position}/axes", np.array([3 if position == 0 else 2], dtype=np.int64))
            full = f"{output}/with_sentinels"
            node.output[position] = full
            after[node.name].append(helper.make_node("Slice", [full, zero, kept, axis], [output], name=f"{output}/real"))

    nodes = [n for node in graph.node for n in (*before[node.name], node, *after[node.name])]
    read = {name for node in nodes for name in node.input} | graph_outputs
    while orphans := [n for n in nodes if not read & set(n.output)]:  # the zero states the layers no longer read
        nodes = [n for n in nodes if n not in orphans]
        read = {name for node in nodes for name in node.input} | graph_outputs
    del graph.node[:]
    graph.node.extend(nodes)
    unused = set(initializers) - {name for node in graph.node for name in node.input}
    kept_initializers = [i for i in graph.initializer if i.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    return True

"""The ids graph built directly from the trained weights: a handful of standard ONNX operators per
member instead of the TorchScript exporter's ~200 (packed-sequence sorting, scatters, transposes
and shape arithmetic), same arithmetic.

For each member, the recurrent layers are ONNX ``LSTM``/``GRU``/``RNN`` operators fed the
sequence lengths (``sequence_lens``): ONNX Runtime then stops each text at its own length, as
PyTorch's packed sequences do, and the final hidden state ``Y_h`` is exactly the output at the
text's last step going forward (and at step 0 going backward), which is what
``pooling="last"`` takes. So a member is::

    input_ids [B, T] -> Transpose -> Gather(embedding) [T, B, E] -> LSTM (sequence_lens) ... -> Y_h
                     -> Gemm (head) -> logits

and the ensemble averages the members' softmax (sigmoids, multi-label), as :class:`rnnonnx.model.Ensemble` does,
blended with the linear member's (:func:`_linear`) when the model has one. Export
checks this graph against PyTorch like any other (1e-5, every decided label); models it does not
cover (``pooling="max"`` or ``"concat"``, a bag-of-n-grams branch) keep the TorchScript export.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bundle import IDS_INPUT, LOGITS, OPSET, PROBABILITIES
from .text import PAD_ID

IR_VERSION = 8
# PyTorch's gate order within a recurrent weight matrix, as positions of ONNX's order: ONNX LSTM is
# (input, output, forget, cell) where PyTorch stores (input, forget, cell, output); ONNX GRU is
# (update, reset, hidden) where PyTorch stores (reset, update, new).
GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}


def supported(config: Any) -> bool:
    """Whether :func:`ids_model` builds this model (``pooling="last"``, any arch, layers, direction,
    no bag-of-n-grams branch; with or without the linear member)."""
    return config.pooling == "last" and config.arch in GATE_ORDER and not config.ngram_buckets


def _gates(weight: np.ndarray, arch: str) -> np.ndarray:
    blocks = np.split(weight, len(GATE_ORDER[arch]), axis=0)
    return np.concatenate([blocks[i] for i in GATE_ORDER[arch]], axis=0)


def _members(model: Any) -> list[Any]:
    from .model import Ensemble

    return list(model.members) if isinstance(model, Ensemble) else [model]


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _member(b: _Builder, member: Any, prefix: str, ids_t: str, lengths: str) -> str:
    """The nodes of one classifier, from the transposed ids [T, B] to its logits [B, classes]."""
    config = member.config
    arch, hidden, directions = config.arch, config.hidden, 2 if config.bidirectional else 1
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in member.state_dict().items()}
    table = b.const(f"{prefix}embedding.weight", state["embedding.weight"])
    x = b.node("Gather", [table, ids_t], f"{prefix}embedded", axis=0)
    y_h = ""
    for layer in range(config.layers):
        suffixes = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if config.bidirectional else [])
        w = np.stack([_gates(state[f"rnn.weight_ih{s}"], arch) for s in suffixes])
        r = np.stack([_gates(state[f"rnn.weight_hh{s}"], arch) for s in suffixes])
        bias = np.stack(
            [np.concatenate([_gates(state[f"rnn.bias_ih{s}"], arch), _gates(state[f"rnn.bias_hh{s}"], arch)]) for s in suffixes]
        )
        name = f"{prefix}rnn.l{layer}"
        inputs = [x, b.const(f"{name}.W", w), b.const(f"{name}.R", r), b.const(f"{name}.B", bias), lengths]
        attributes: dict[str, Any] = {"hidden_size": hidden, "direction": "bidirectional" if directions == 2 else "forward"}
        if arch == "gru":
            attributes["linear_before_reset"] = 1
        from onnx import helper

        b.nodes.append(helper.make_node(arch.upper(), inputs, [f"{name}.Y", f"{name}.Y_h"], name=name, **attributes))
        y_h = f"{name}.Y_h"
        if layer + 1 < config.layers:  # Y [T, directions, B, H] -> [T, B, directions * H]
            moved = b.node("Transpose", [f"{name}.Y"], f"{name}.Y_t", perm=[0, 2, 1, 3])
            x = b.node("Reshape", [moved, "fast/shape_tb_"], f"{name}.out")
    # Y_h [directions, B, H] -> [B, directions * H]: forward then backward, as PyTorch concatenates them
    features = b.node("Transpose", [y_h], f"{prefix}last_t", perm=[1, 0, 2])
    features = b.node("Reshape", [features, "fast/shape_b_"], f"{prefix}features")
    head_w = b.const(f"{prefix}head.weight", state["head.weight"])
    head_b = b.const(f"{prefix}head.bias", state["head.bias"])
    return b.node("Gemm", [features, head_w, head_b], f"{prefix}logits", transB=1)


def _linear(b: _Builder, linear: Any, ids: str) -> str:
    """The linear member's logits [B, classes] from the ids [B, T], as
    :meth:`rnnonnx.linear.LinearMember.forward`: token and bigram rows, weighted by their
    idf over its L2 norm, summed by one batched MatMul."""
    from onnx import TensorProto

    from .linear import GROUP_PRIME, SLOT_PRIME

    state = {k: v.detach().cpu().numpy() for k, v in linear.state_dict().items()}
    i64 = {name: b.const(f"linear/{name}", np.array(value, dtype=np.int64)) for name, value in _LINEAR_INTS.items()}
    zero_col = b.node("Mul", [b.node("Slice", [ids, i64["0"], i64["1"], i64["1"]], "linear/first"), i64["0"]], "linear/zero_col")
    rest = b.node("Slice", [ids, i64["1"], i64["big"], i64["1"]], "linear/rest")
    following = b.node("Concat", [rest, zero_col], "linear/following", axis=1)
    vocab = b.const("linear/vocab", np.array(linear.vocab_size, dtype=np.int64))
    buckets = b.const("linear/buckets", np.array(linear.buckets, dtype=np.int64))

    def pair(multiplier: int, name: str) -> str:  # ids * multiplier + following
        factor = b.const(f"linear/{name}_factor", np.array(multiplier, dtype=np.int64))
        return b.node("Add", [b.node("Mul", [ids, factor], f"linear/{name}_scaled"), following], f"linear/{name}")

    if linear.groups:  # the exact index's lookup, as rnnonnx.linear.slot_of
        groups = b.const("linear/groups", np.array(linear.groups, dtype=np.int64))
        group = b.node("Mod", [pair(GROUP_PRIME, "group_pair"), groups], "linear/group")
        shift = b.node("Gather", [b.const("linear.bigram_shifts", state["bigram_shifts"]), group], "linear/shift", axis=0)
        home = b.node("Mod", [pair(SLOT_PRIME, "slot_pair"), buckets], "linear/home")
        slot = b.node("Mod", [b.node("Add", [home, shift], "linear/shifted"), buckets], "linear/slot")
        stored = b.node("Gather", [b.const("linear.bigram_keys", state["bigram_keys"]), slot], "linear/stored_key", axis=0)
        known = b.node("Equal", [stored, pair(linear.vocab_size, "key")], "linear/known")
        bigrams = b.node("Where", [known, b.node("Add", [slot, vocab], "linear/bigram_rows"), i64["0"]], "linear/bigrams")
    else:
        hashed = b.node("Mod", [pair(linear.multiplier, "pair"), buckets], "linear/hashed")
        bigrams = b.node("Add", [hashed, vocab], "linear/bigram_rows")
        has_next = b.node("Not", [b.node("Equal", [following, i64["0"]], "linear/next_is_pad")], "linear/has_next")
        bigrams = b.node("Where", [has_next, bigrams, i64["0"]], "linear/bigrams")
    features = b.node("Concat", [ids, bigrams], "linear/features", axis=1)
    idf = b.node("Cast", [b.const("linear.idf", state["idf"].astype(np.float16))], "linear/idf", to=TensorProto.FLOAT)
    weights = b.node("Gather", [idf, features], "linear/weights", axis=0)  # a table cast once, at load
    squares = b.node("Mul", [weights, weights], "linear/squares")
    norm = b.node("Sqrt", [b.node("ReduceSum", [squares, i64["axis1"]], "linear/sum_squares", keepdims=1)], "linear/norm")
    norm = b.node("Max", [norm, b.const("linear/eps", np.array(1e-6, dtype=np.float32))], "linear/norm_clamped")
    scaled = b.node("Unsqueeze", [b.node("Div", [weights, norm], "linear/tfidf"), i64["axis1"]], "linear/tfidf_row")
    rows = b.node(
        "Gather", [b.const("linear.table.weight", state["table.weight"].astype(np.float32)), features], "linear/rows", axis=0
    )
    summed = b.node("Squeeze", [b.node("MatMul", [scaled, rows], "linear/summed_3d"), i64["axis1"]], "linear/summed")
    return b.node("Add", [summed, b.const("linear.bias", state["bias"].astype(np.float32))], "linear/logits")


_LINEAR_INTS = {"0": [0], "1": [1], "big": [np.iinfo(np.int64).max], "axis1": [1]}


def ids_model(model: Any) -> Any:
    """The ids graph (``onnx.ModelProto``) of a trained :class:`~rnnonnx.model.TextClassifier` or
    :class:`~rnnonnx.model.Ensemble` with ``pooling="last"``: ``input_ids`` [batch, sequence] int64
    (0 = padding, right-padded) to ``logits`` and ``probabilities`` [batch, classes]."""
    from onnx import TensorProto, helper

    config = model.config
    if not supported(config):
        raise ValueError(f"no direct graph for pooling {config.pooling!r} (only 'last')")
    b = _Builder()
    if config.layers > 1:
        b.const("fast/shape_tb_", np.array([0, 0, -1], dtype=np.int64))
    b.const("fast/shape_b_", np.array([0, -1], dtype=np.int64))
    pad = b.const("fast/pad_id", np.array(PAD_ID, dtype=np.int64))
    one = b.const("fast/one", np.array(1, dtype=np.int32))
    recurrent_ids = IDS_INPUT
    if config.recurrent_len:  # the recurrent members read the first recurrent_len ids (the linear member all)
        ends = b.const("fast/recurrent_len", np.array([config.recurrent_len], dtype=np.int64))
        starts, axes = b.const("fast/start0", np.array([0], dtype=np.int64)), b.const("fast/axes1", np.array([1], dtype=np.int64))
        recurrent_ids = b.node("Slice", [IDS_INPUT, starts, ends, axes], "fast/recurrent_ids")
    real = b.node("Not", [b.node("Equal", [recurrent_ids, pad], "fast/is_pad")], "fast/is_token")
    counted = b.node("Cast", [real], "fast/is_token_i32", to=TensorProto.INT32)
    count = b.node("ReduceSum", [counted, b.const("fast/axis1", np.array([1], dtype=np.int64))], "fast/count", keepdims=0)
    lengths = b.node("Max", [count, one], "fast/lengths")  # a row of only padding counts as length 1
    ids_t = b.node("Transpose", [recurrent_ids], "fast/ids_t", perm=[1, 0])
    members = _members(model)
    logits = [_member(b, m, f"members.{i}." if len(members) > 1 else "model.", ids_t, lengths) for i, m in enumerate(members)]
    # one sigmoid per label for a multi-label model, else a softmax over the labels (model.probabilities_of)
    squash = "Sigmoid" if config.multi_label else "Softmax"
    axis = {} if config.multi_label else {"axis": -1}
    linear = getattr(model, "linear", None)
    if len(members) > 1 or linear is not None:
        probabilities = [b.node(squash, [x], f"{x}/{squash.lower()}", **axis) for x in logits]
        total = b.node("Sum", probabilities, "fast/sum") if len(probabilities) > 1 else probabilities[0]
        mean = b.node("Div", [total, b.const("fast/members", np.array(len(members), dtype=np.float32))], "fast/mean")
        if linear is not None:  # (1 - w) * recurrent + w * linear, as Ensemble.forward
            weight = config.linear_weight
            own = b.node("Softmax", [_linear(b, linear, IDS_INPUT)], "linear/softmax", axis=-1)
            kept = b.node(
                "Mul", [mean, b.const("fast/recurrent_share", np.array(1 - weight, dtype=np.float32))], "fast/recurrent_part"
            )
            added = b.node("Mul", [own, b.const("fast/linear_share", np.array(weight, dtype=np.float32))], "fast/linear_part")
            mean = b.node("Add", [kept, added], "fast/blend")
        tiny = b.const("fast/tiny", np.array(np.finfo(np.float32).tiny, dtype=np.float32))
        out = b.node("Log", [b.node("Max", [mean, tiny], "fast/clamped")], "fast/log_mean")
        if config.multi_label:  # the logit of the mean, so a sigmoid over it gives the mean back
            rest = b.node("Sub", [b.const("fast/one_f", np.array(1.0, dtype=np.float32)), mean], "fast/rest")
            log_rest = b.node("Log", [b.node("Max", [rest, tiny], "fast/rest_clamped")], "fast/log_rest")
            out = b.node("Sub", [out, log_rest], "fast/logit_mean")
    else:
        out = logits[0]
    if config.logit_shift:  # logit adjustment, as model._shifted
        out = b.node("Add", [out, b.const("fast/logit_shift", np.array(config.logit_shift, dtype=np.float32))], "fast/shifted")
    if config.temperature != 1.0:
        out = b.node("Div", [out, b.const("fast/temperature", np.array(config.temperature, dtype=np.float32))], "fast/scaled")
    b.node("Identity", [out], LOGITS)
    b.node(squash, [LOGITS], PROBABILITIES, **axis)
    graph = helper.make_graph(
        b.nodes,
        "rnnonnx_ids",
        [helper.make_tensor_value_info(IDS_INPUT, TensorProto.INT64, ["batch", "sequence"])],
        [
            helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", config.num_classes]),
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", config.num_classes]),
        ],
        b.initializers,
    )
    return helper.make_model(graph, ir_version=IR_VERSION, opset_imports=[helper.make_opsetid("", OPSET)])

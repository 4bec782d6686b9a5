"""The ids graph built directly from the trained weights: a handful of standard ONNX operators per
member instead of the TorchScript exporter's ~200 (packed-sequence sorting, scatters, transposes
and shape arithmetic), same arithmetic.

For each member, the recurrent layers are ONNX ``LSTM``/``GRU``/``RNN`` operators fed the
sequence lengths (``sequence_lens``): ONNX Runtime then stops each text at its own length, as
PyTorch's packed sequences do, and the final hidden state ``Y_h`` is exactly the output at the
text's last step going forward (and at step 0 going backward), which is what
``pooling="last"`` takes. So a member is::

    input_ids [B, T] -> Transpose -> Gather(embedding) [T, B, E] -> LSTM (sequence_lens) ... -> Y_h

and the members' heads are one ``Gemm`` (:func:`_heads`); an ensemble squashes all its votes with
one softmax (sigmoids, multi-label) and averages them, as :class:`rnnonnx.model.Ensemble` does,
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


def _final_state(b: _Builder, member: Any, prefix: str, ids_t: str, lengths: str) -> str:
    """The nodes of one classifier's recurrent layers, from the transposed ids [T, B] to the last
    layer's final state ``Y_h`` [directions, B, hidden]."""
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
    return y_h


def _heads(b: _Builder, members: list[Any], finals: list[str]) -> str:
    """The members' logits side by side, [B, members * classes], from their final states: one
    ``Gemm`` whose weight holds each member's head on the diagonal, so an ensemble pays for one
    head, not one per member. The features of a state ``Y_h`` [directions, B, H] are forward then
    backward, as PyTorch concatenates them."""
    heads = [{k: v.detach().cpu().numpy().astype(np.float32) for k, v in m.head.state_dict().items()} for m in members]
    classes, width = heads[0]["weight"].shape
    if any(h["weight"].shape != (classes, width) for h in heads):
        raise ValueError("the members of an ensemble differ in shape")
    stacked = b.node("Concat", finals, "fast/finals", axis=0) if len(finals) > 1 else finals[0]
    moved = b.node("Transpose", [stacked], "fast/finals_t", perm=[1, 0, 2])  # [B, members * directions, H]
    features = b.node("Reshape", [moved, "fast/shape_b_"], "fast/features")
    weight = np.zeros((len(heads) * classes, len(heads) * width), dtype=np.float32)
    for i, head in enumerate(heads):
        weight[i * classes : (i + 1) * classes, i * width : (i + 1) * width] = head["weight"]
    bias = np.concatenate([head["bias"] for head in heads])
    heads_w, heads_b = b.const("fast/heads.weight", weight), b.const("fast/heads.bias", bias)
    return b.node("Gemm", [features, heads_w, heads_b], "fast/logits", transB=1)


def _linear(b: _Builder, linear: Any, ids: str) -> str:
    """The linear member's logits [B, classes] from the ids [B, T], as
    :meth:`rnnonnx.linear.LinearMember.forward`: token and bigram rows, weighted by their idf over
    its L2 norm, summed by one batched MatMul."""
    from onnx import TensorProto

    from .linear import KEY_PRIME

    state = {k: v.detach().cpu().numpy() for k, v in linear.state_dict().items()}
    i64 = {name: b.const(f"linear/{name}", np.array(value, dtype=np.int64)) for name, value in _LINEAR_INTS.items()}
    # each id's next id, 0 after the last: the ids one column to the left (a negative pad crops)
    following = b.node("Pad", [ids, i64["shift_left"]], "linear/following")
    vocab = b.const("linear/vocab", np.array(linear.vocab_size, dtype=np.int64))
    if linear.groups:  # the exact index's lookup, as rnnonnx.linear.slot_of
        prime = b.const("linear/key_prime", np.array(KEY_PRIME, dtype=np.int64))
        key = b.node("Add", [b.node("Mul", [ids, prime], "linear/key_high"), following], "linear/key")
        group = b.node("Mod", [key, b.const("linear/groups", np.array(linear.groups, dtype=np.int64))], "linear/group")
        shift = b.node("Gather", [b.const("linear.bigram_shifts", state["bigram_shifts"]), group], "linear/shift", axis=0)
        buckets = b.const("linear/buckets", np.array(linear.buckets, dtype=np.int64))
        slot = b.node("Mod", [b.node("Add", [key, shift], "linear/shifted"), buckets], "linear/slot")
        stored = b.node("Gather", [b.const("linear.bigram_keys", state["bigram_keys"]), slot], "linear/stored_key", axis=0)
        known = b.node("Equal", [stored, key], "linear/known")
        bigrams = b.node("Where", [known, b.node("Add", [slot, vocab], "linear/bigram_rows"), i64["0"]], "linear/bigrams")
    else:  # (ids * multiplier + following) mod buckets, as the bag branch hashes
        factor = b.const("linear/multiplier", np.array(linear.multiplier, dtype=np.int64))
        pair = b.node("Add", [b.node("Mul", [ids, factor], "linear/pair_scaled"), following], "linear/pair")
        buckets = b.const("linear/buckets", np.array(linear.buckets, dtype=np.int64))
        hashed = b.node("Mod", [pair, buckets], "linear/hashed")
        bigrams = b.node("Add", [hashed, vocab], "linear/bigram_rows")
        has_next = b.node("Not", [b.node("Equal", [following, i64["0"]], "linear/next_is_pad")], "linear/has_next")
        bigrams = b.node("Where", [has_next, bigrams, i64["0"]], "linear/bigrams")
    features = b.node("Concat", [ids, bigrams], "linear/features", axis=1)
    idf = b.node("Cast", [b.const("linear.idf", state["idf"].astype(np.float16))], "linear/idf", to=TensorProto.FLOAT)
    weights = b.node("Gather", [idf, features], "linear/weights", axis=0)  # a table cast once, at load
    # the L2 norm as a ReduceSum of squares: ONNX Runtime's ReduceL2 drifts by 1e-5 over thousands of features
    squares = b.node("Mul", [weights, weights], "linear/squares")
    norm = b.node("Sqrt", [b.node("ReduceSum", [squares, i64["axis1"]], "linear/sum_squares", keepdims=1)], "linear/norm")
    norm = b.node("Max", [norm, b.const("linear/eps", np.array(1e-6, dtype=np.float32))], "linear/norm_clamped")
    tfidf = b.node("Unsqueeze", [b.node("Div", [weights, norm], "linear/tfidf"), i64["axis1"]], "linear/tfidf_row")
    # the rows summed by one batched MatMul [B, 1, F] x [B, F, classes], as accurate as PyTorch's sum
    table = b.const("linear.table.weight", state["table.weight"].astype(np.float32))
    rows = b.node("Gather", [table, features], "linear/rows", axis=0)
    normalised = b.node("Squeeze", [b.node("MatMul", [tfidf, rows], "linear/summed_3d"), i64["axis1"]], "linear/normalised")
    return b.node("Add", [normalised, b.const("linear.bias", state["bias"].astype(np.float32))], "linear/logits")


_LINEAR_INTS = {"0": [0], "axis1": [1], "shift_left": [0, -1, 0, 1]}


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
    axis1 = b.const("fast/axis1", np.array([1], dtype=np.int64))
    count = b.node("ReduceSum", [counted, axis1], "fast/count", keepdims=0)
    lengths = b.node("Max", [count, one], "fast/lengths")  # a row of only padding counts as length 1
    ids_t = b.node("Transpose", [recurrent_ids], "fast/ids_t", perm=[1, 0])
    members = _members(model)
    prefixes = [f"members.{i}." if len(members) > 1 else "model." for i in range(len(members))]
    out = _heads(b, members, [_final_state(b, m, prefix, ids_t, lengths) for m, prefix in zip(members, prefixes)])
    # one sigmoid per label for a multi-label model, else a softmax over the labels (model.probabilities_of)
    squash = "Sigmoid" if config.multi_label else "Softmax"
    axis = {} if config.multi_label else {"axis": -1}
    linear = getattr(model, "linear", None)
    if len(members) > 1 or linear is not None:  # the votes [B, voters, classes], squashed at once
        voters = [out] + ([_linear(b, linear, IDS_INPUT)] if linear is not None else [])
        side_by_side = b.node("Concat", voters, "fast/voters", axis=1) if len(voters) > 1 else out
        shape = b.const("fast/shape_votes", np.array([0, -1, config.num_classes], dtype=np.int64))
        votes = b.node(squash, [b.node("Reshape", [side_by_side, shape], "fast/votes")], "fast/probabilities", **axis)
        if linear is not None:  # (1 - w) * the members' mean + w * linear, as Ensemble.forward
            weight = config.linear_weight
            shares = np.array([(1 - weight) / len(members)] * len(members) + [weight], dtype=np.float32).reshape(-1, 1)
            weighted = b.node("Mul", [votes, b.const("fast/shares", shares)], "fast/weighted")
            mean = b.node("ReduceSum", [weighted, axis1], "fast/mean", keepdims=0)
        else:
            mean = b.node("ReduceMean", [votes], "fast/mean", axes=[1], keepdims=0)
        tiny = b.const("fast/tiny", np.array(np.finfo(np.float32).tiny, dtype=np.float32))
        out = b.node("Log", [b.node("Max", [mean, tiny], "fast/clamped")], "fast/log_mean")
        if config.multi_label:  # the logit of the mean, so a sigmoid over it gives the mean back
            rest = b.node("Sub", [b.const("fast/one_f", np.array(1.0, dtype=np.float32)), mean], "fast/rest")
            log_rest = b.node("Log", [b.node("Max", [rest, tiny], "fast/rest_clamped")], "fast/log_rest")
            out = b.node("Sub", [out, log_rest], "fast/logit_mean")
    if config.logit_shift:  # logit adjustment, as model._shifted
        out = b.node("Add", [out, b.const("fast/logit_shift", np.array(config.logit_shift, dtype=np.float32))], "fast/shifted")
    if config.temperature != 1.0:
        out = b.node("Div", [out, b.const("fast/temperature", np.array(config.temperature, dtype=np.float32))], "fast/scaled")
    b.nodes[-1].output[0] = LOGITS  # the node computing `out` is the last: it writes `logits` itself
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

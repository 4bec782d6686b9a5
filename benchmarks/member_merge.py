"""Would one wide LSTM serve an ensemble faster than its members side by side?

The members of an ensemble are independent LSTMs (embedding 64, hidden 64 by default). One way to
run them as a single operator is a block-diagonal LSTM: their embeddings side by side as one input
of 3 x 64, hidden 3 x 64, every weight matrix block-diagonal, so each member still sees only its
own inputs and state and the arithmetic is the same. It does 3x the multiply-adds of the members
(the zero blocks are multiplied too) but calls one operator instead of three. This times both
graphs in ONNX Runtime with random weights of those shapes (its LSTM kernel multiplies zeros like
any other number, so dense weights time the same), interleaved rounds, median per call and range over
rounds, the ratio taken within each round: one text of 20 tokens, and a batch of 256.

    python benchmarks/member_merge.py --threads 1
    python benchmarks/member_merge.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

EMBED, HIDDEN, VOCAB, CLASSES, TOKENS, MEMBERS = 64, 64, 8000, 2, 20, 3


def graph(merged: bool, rng: np.random.Generator) -> bytes:
    """Members side by side (each Gather, LSTM, head, softmax; softmaxes averaged), or one merged LSTM."""
    nodes, weights = [helper.make_node("Transpose", ["ids"], ["ids_t"], perm=[1, 0])], []
    parts = [(MEMBERS * EMBED, MEMBERS * HIDDEN, "merged")] if merged else [(EMBED, HIDDEN, f"m{k}") for k in range(MEMBERS)]
    outputs = []
    for inputs, hidden, name in parts:
        weights += [
            numpy_helper.from_array(rng.standard_normal((VOCAB, inputs)).astype(np.float32), f"{name}.E"),
            numpy_helper.from_array(0.1 * rng.standard_normal((1, 4 * hidden, inputs)).astype(np.float32), f"{name}.W"),
            numpy_helper.from_array(0.1 * rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32), f"{name}.R"),
            numpy_helper.from_array(rng.standard_normal((hidden, CLASSES)).astype(np.float32), f"{name}.head"),
        ]
        nodes += [
            helper.make_node("Gather", [f"{name}.E", "ids_t"], [f"{name}.x"]),
            helper.make_node("LSTM", [f"{name}.x", f"{name}.W", f"{name}.R"], [f"{name}.y", f"{name}.h"], hidden_size=hidden),
            helper.make_node("Squeeze", [f"{name}.h", "axis0"], [f"{name}.last"]),
            helper.make_node("MatMul", [f"{name}.last", f"{name}.head"], [f"{name}.logits"]),
            helper.make_node("Softmax", [f"{name}.logits"], [f"{name}.p"], axis=-1),
        ]
        outputs.append(f"{name}.p")
    weights.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"))
    nodes.append(helper.make_node("Mean", outputs, ["p"]))
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "members",
            [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "tokens"])],
            [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", CLASSES])],
            weights,
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    sessions = {k: ort.InferenceSession(graph(k, rng), options, providers=["CPUExecutionProvider"]) for k in (False, True)}
    for label, batch, calls in (("one text", 1, 3000), ("batch of 256", 256, 30)):
        ids = rng.integers(2, VOCAB, (batch, TOKENS)).astype(np.int64)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for merged, session in sessions.items():
                started = time.perf_counter()
                for _ in range(calls):
                    session.run(None, {"ids": ids})
                times[merged].append((time.perf_counter() - started) / calls * 1e6)
        ratios = [m / a for a, m in zip(times[False], times[True])]  # within each round

        def cell(values: list[float], fmt: str) -> str:
            return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"

        print(
            f"{label}, {args.threads} thread(s): members side by side {cell(times[False], ',.1f')} us, "
            f"one block-diagonal LSTM {cell(times[True], ',.1f')} us, ratio {cell(ratios, '.2f')}x"
        )


if __name__ == "__main__":
    main()

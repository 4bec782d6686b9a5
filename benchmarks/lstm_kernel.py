"""Where an int8 LSTM step goes: ONNX Runtime's fp32 ``LSTM`` and its int8 ``DynamicQuantizeLSTM``
(the layer ``rnnonnx export --quantize int8`` writes, built by the same
:func:`rnnonnx.quantize.quantize_kernels`) timed alone on the same random weights, per text and
time step, at each hidden size; beside them the matrix products alone (fp32 ``MatMul`` against
uint8 x int8 ``MatMulInteger`` of the layer's shape), which is all that int8 makes faster.

The gap between the two ratios is what the int8 kernel adds to every step and fp32 does not pay:
quantizing the hidden state (its minimum and maximum, then the conversion) and scaling the
integer products back to fp32; the gate activations cost both the same. A hidden size the kernel
sees as 64 + 2 (a twin's two sentinel units, :mod:`rnnonnx.pinning`) spills past the products'
blocks, so the table shows those widths too.

    python benchmarks/lstm_kernel.py [--hidden 62 --hidden 64 --hidden 66] [--batch 32] [--steps 20]
        [--threads 1] [--rounds 5] [--seconds 0.5]

Prints a Markdown table: the median over interleaved rounds (every model once per round) with the
range, one thread by default, as the predictor runs each batch.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from rnnonnx.benchmark import spread
from rnnonnx.pinning import SENTINELS

GATES = 4
DEFAULT_HIDDEN = (62, 64, 66, 126, 128, 130)


def lstm_model(hidden: int, inputs: int, seed: int = 0) -> bytes:
    """A one-layer fp32 ONNX ``LSTM`` [steps, batch, inputs] -> final state, with ``sequence_lens``
    as the predictor's graphs feed it, on random weights of a trained layer's scale."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(hidden)
    weights = {
        "W": rng.uniform(-scale, scale, (1, GATES * hidden, inputs)),
        "R": rng.uniform(-scale, scale, (1, GATES * hidden, hidden)),
        "B": rng.uniform(-scale, scale, (1, 2 * GATES * hidden)),
    }
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "lengths"], ["Y", "Y_h"], hidden_size=hidden)
    graph = helper.make_graph(
        [node],
        "lstm",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["steps", "batch", inputs]),
            helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]),
        ],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "batch", hidden])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def product_models(hidden: int, inputs: int, seed: int = 0) -> dict[str, bytes]:
    """The layer's two matrix products as one [rows, inputs] x [inputs, 4 * hidden] product:
    fp32 ``MatMul``, and uint8 x int8 ``MatMulInteger`` on the same shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    out = {}
    for name, (op, x_type, weight) in {
        "fp32": ("MatMul", TensorProto.FLOAT, rng.uniform(-1, 1, (inputs, GATES * hidden)).astype(np.float32)),
        "int8": ("MatMulInteger", TensorProto.UINT8, rng.integers(-64, 65, (inputs, GATES * hidden)).astype(np.int8)),
    }.items():
        graph = helper.make_graph(
            [helper.make_node(op, ["X", "W"], ["Y"])],
            f"product_{name}",
            [helper.make_tensor_value_info("X", x_type, ["rows", inputs])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT if name == "fp32" else TensorProto.INT32, None)],
            [numpy_helper.from_array(weight, "W")],
        )
        out[name] = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    return out


def int8_layer(model_bytes: bytes) -> bytes:
    """The fp32 layer on ONNX Runtime's int8 kernel, as export quantizes a twin (without the
    sentinels: the hidden size given is the width the kernel sees)."""
    from rnnonnx.quantize import quantize_kernels

    return quantize_kernels(model_bytes, pin=False)[0]


def session(model_bytes: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def timed(sess: Any, feed: dict[str, np.ndarray], seconds: float) -> float:
    """Seconds per run: warm once, then as many runs as fit in ``seconds`` (at least 3)."""
    sess.run(None, feed)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        sess.run(None, feed)
        calls += 1
    return (time.perf_counter() - start) / calls


def feeds(hidden: int, inputs: int, batch: int, steps: int, seed: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Inputs of a trained layer's range (an embedding's few tenths, a hidden state's [-1, 1])."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 0.5, (steps, batch, inputs)).astype(np.float32)
    rows = steps * batch
    return {
        "layer": {"X": x, "lengths": np.full(batch, steps, dtype=np.int32)},
        "fp32 products": {"X": rng.uniform(-1, 1, (rows, inputs)).astype(np.float32)},
        "int8 products": {"X": rng.integers(0, 256, (rows, inputs)).astype(np.uint8)},
    }


def measure(hidden_sizes: list[int], batch: int, steps: int, threads: int, rounds: int, seconds: float) -> dict[int, Any]:
    """Microseconds per text and step of each layer, and the products' speed-up, per hidden size;
    every figure the median over ``rounds`` interleaved rounds with its range."""
    sessions, inputs_of = {}, {}
    for hidden in hidden_sizes:
        fp32 = lstm_model(hidden, hidden)
        products = product_models(hidden, hidden)
        sessions[hidden] = {
            "fp32": session(fp32, threads),
            "int8": session(int8_layer(fp32), threads),
            "fp32 products": session(products["fp32"], threads),
            "int8 products": session(products["int8"], threads),
        }
        inputs_of[hidden] = feeds(hidden, hidden, batch, steps)
    samples: dict[int, dict[str, list[float]]] = {h: {k: [] for k in sessions[h]} for h in hidden_sizes}
    for _ in range(rounds):
        for hidden in hidden_sizes:
            for name, sess in sessions[hidden].items():
                feed = inputs_of[hidden]["layer" if name in ("fp32", "int8") else name]
                samples[hidden][name].append(timed(sess, feed, seconds))
    out: dict[int, Any] = {}
    for hidden, timing in samples.items():
        per_step = {k: [1e6 * t / (batch * steps) for t in timing[k]] for k in ("fp32", "int8")}
        out[hidden] = {
            "fp32_us": spread(per_step["fp32"]),
            "int8_us": spread(per_step["int8"]),
            "layer_speedup": spread([f / i for f, i in zip(timing["fp32"], timing["int8"])]),
            "product_speedup": spread([f / i for f, i in zip(timing["fp32 products"], timing["int8 products"])]),
        }
        pinned = samples.get(hidden + SENTINELS)
        if pinned:  # a twin of this layer: the kernel sees its two sentinel units too
            out[hidden]["twin_speedup"] = spread([f / i for f, i in zip(timing["fp32"], pinned["int8"])])
    return out


def table(results: dict[int, Any]) -> str:
    def cell(s: dict[str, Any], fmt: str, unit: str = "") -> str:
        return f"{format(s['median'], fmt)}{unit} ({format(s['min'], fmt)}-{format(s['max'], fmt)})"

    lines = [
        "| hidden size the kernel sees | fp32 LSTM, µs per text-step | int8 LSTM, µs per text-step | "
        "int8 layer vs fp32 | int8 products vs fp32 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for hidden, r in results.items():
        lines.append(
            f"| {hidden} | {cell(r['fp32_us'], '.3f')} | {cell(r['int8_us'], '.3f')} | "
            f"{cell(r['layer_speedup'], '.2f', 'x')} | {cell(r['product_speedup'], '.2f', 'x')} |"
        )
    for hidden, r in results.items():
        if "twin_speedup" in r:
            lines.append(
                f"\nAn exported twin of a hidden-{hidden} layer (the kernel sees {hidden + SENTINELS} units) against "
                f"that layer in fp32: {cell(r['twin_speedup'], '.2f', 'x')}."
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from rnnonnx.machine import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, action="append", help="hidden sizes (the kernel's width); repeatable")
    parser.add_argument("--batch", type=int, default=32, help="texts per call (the predictor's calls hold 16-64)")
    parser.add_argument("--steps", type=int, default=20, help="tokens per text")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement and round")
    args = parser.parse_args(argv)
    hidden_sizes = args.hidden or list(DEFAULT_HIDDEN)
    if min(hidden_sizes) < 1 or args.batch < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("--hidden, --batch, --steps and --rounds must be positive")
    info = machine()
    results = measure(hidden_sizes, args.batch, args.steps, args.threads, args.rounds, args.seconds)
    print(
        f"CPU {info.get('cpu')}; {args.threads} thread(s); batch {args.batch}, {args.steps} steps, input width = hidden; "
        f"median of {args.rounds} interleaved rounds (min-max)\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()

"""Where a second thread helps: ONNX Runtime's own profile of each operator at batch 256, at 1
and 2 threads, for the fp32 text graph, ONNX Runtime's dynamically quantized int8 graph (its
int8 LSTM kernel; on every layer, and on the LSTM only), and the bundle's int8 graph when it has
one. Each (graph, thread count) runs
in a fresh process, in interleaved rounds; the table gives each operator type's median time per
batch and its speed-up from the second thread.

A second estimate counts CPU time instead of wall time: at 2 threads with spinning off (idle
pool threads sleep instead of polling), the CPU time of the pool's thread is the work it took
from the calling thread; if the two split each parallel section evenly, the parallel share of
the work is ``p = 2 * pool / total`` and Amdahl's law bounds the speed-up from a second thread by
``1 / (1 - p / 2)``. ONNX Runtime hands parallel work out in chunks to whichever thread is free,
so when other processes keep one of the threads waiting the split is uneven and the share
drifts too: both tables need an idle machine.

    python benchmarks/thread_scaling.py BUNDLE [--rounds 3] [--batches 20]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Operator types grouped as the table shows them.
GROUPS = {
    "StringNormalizer": "tokenize (in-graph)",
    "Tokenizer": "tokenize (in-graph)",
    "LabelEncoder": "tokenize (in-graph)",
    "LSTM": "recurrent layer",
    "DynamicQuantizeLSTM": "recurrent layer",
    "GRU": "recurrent layer",
    "RNN": "recurrent layer",
    "Gather": "embedding lookup and index ops",
    "Cast": "embedding lookup and index ops",
    "Mul": "embedding lookup and index ops",
    "DequantizeLinear": "embedding lookup and index ops",
    "Gemm": "output layer",
    "MatMulInteger": "output layer",
    "DynamicQuantizeLinear": "output layer",
}


def thread_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def parallel_share(model: str, batches: int) -> None:
    """Run ``batches`` batches of 256 at 2 threads without spinning; print the pool's share of the CPU time."""
    import numpy as np
    import onnxruntime as ort

    from rnnonnx.data import read_builtin

    texts = read_builtin().texts
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    first, output = session.get_inputs()[0], session.get_outputs()[0].name
    if first.name == "text":
        feeds = [np.array(texts[(i * 256) % 9984 : (i * 256) % 9984 + 256], dtype=object) for i in range(batches)]
    else:  # the recurrent layer alone: 18 steps (the built-in sentences' mean) of 256 rows
        feeds = [np.random.default_rng(i).standard_normal((18, 256, first.shape[2]), dtype=np.float32) for i in range(batches)]
    session.run([output], {first.name: feeds[0]})
    before = thread_cpu_seconds()
    for batch in feeds:
        session.run([output], {first.name: batch})
    after = thread_cpu_seconds()
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    main, total = spent.get(os.getpid(), 0.0), sum(spent.values())
    print(json.dumps({"total_s": total, "pool_s": total - main}))


def recurrent_alone(ids_model: Path, out: Path) -> None:
    """The graph's first recurrent node alone, with its weights: X [steps, 256, input] -> Y."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(ids_model))
    node = next(n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))
    initializers = {i.name: i for i in model.graph.initializer}
    inputs = [name for name in node.input[:4] if name in initializers]
    alone = helper.make_node(node.op_type, ["X", *inputs], ["Y"])
    alone.attribute.extend(node.attribute)
    size = initializers[node.input[1]].dims[2]
    graph = helper.make_graph(
        [alone],
        "recurrent_alone",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["steps", "batch", size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [initializers[name] for name in inputs],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(out))


def child(model: str, threads: int, batches: int) -> None:
    """Profile ``batches`` runs of 256 built-in sentences; print {group: ms per batch, "wall": ms per batch}."""
    import numpy as np
    import onnxruntime as ort

    from rnnonnx.data import read_builtin

    texts = read_builtin().texts
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"rnnonnx-profile-{os.getpid()}")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = [np.array(texts[i * 256 : (i + 1) * 256], dtype=object) for i in range(batches)]
    session.run(["probabilities"], {"text": feeds[0]})
    started = time.perf_counter()
    for batch in feeds:
        session.run(["probabilities"], {"text": batch})
    wall = (time.perf_counter() - started) * 1e3 / batches
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    totals: dict[str, float] = collections.Counter()
    runs = sum(1 for e in events if e.get("name") == "model_run")
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            totals[GROUPS.get(e["args"].get("op_name", ""), "other operators")] += e["dur"] / 1e3
    print(json.dumps({"wall": wall, **{k: v / max(runs, 1) for k, v in totals.items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--share", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.batches)
        return
    if args.share:
        parallel_share(args.share, 4 * args.batches)
        return
    import onnx
    from int8_schemes import fp16_gathers  # a sibling script of this folder
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from rnnonnx.bundle import Bundle
    from rnnonnx.machine import machine
    from rnnonnx.storage import resolve
    from rnnonnx.textgraph import text_model

    bundle = Bundle(args.bundle)
    work = Path(tempfile.mkdtemp(prefix="rnnonnx-scaling-"))
    # model.onnx reads its weights from model.text.onnx (rnnonnx.storage): one self-contained file here
    hosts = {name: bundle.read(name) for name in bundle.external_data("model.onnx")}
    (work / "fp32.onnx").write_bytes(resolve(bundle.read("model.onnx"), hosts))
    # the linear member's fp16 idf table stays as it is (see int8_schemes.fp16_gathers)
    fp32_bytes = (work / "fp32.onnx").read_bytes()
    quantize_dynamic(
        str(work / "fp32.onnx"),
        str(work / "dynamic.onnx"),
        weight_type=QuantType.QInt8,
        nodes_to_exclude=fp16_gathers(fp32_bytes),
    )
    # ONNX Runtime's dynamic int8 on the LSTM only: the embedding stays fp32, so no DequantizeLinear
    # (a single-threaded loop in ONNX Runtime's CPU builds) runs on the gathered rows.
    quantize_dynamic(
        str(work / "fp32.onnx"), str(work / "dynamic-lstm.onnx"), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"]
    )
    models = {
        "fp32": bundle.path / "model.text.onnx",
        "int8, ORT dynamic": work / "dynamic.text.onnx",
        "int8, ORT dynamic, LSTM only": work / "dynamic-lstm.text.onnx",
    }
    for name, source in (("int8, ORT dynamic", "dynamic.onnx"), ("int8, ORT dynamic, LSTM only", "dynamic-lstm.onnx")):
        models[name].write_bytes(text_model(onnx.load(str(work / source)), bundle.tokenizer).SerializeToString())
    if bundle.has("model.text.int8.onnx"):
        models["int8, bundle"] = bundle.path / "model.text.int8.onnx"
    recurrent_alone(work / "fp32.onnx", work / "recurrent.onnx")
    quantize_dynamic(str(work / "recurrent.onnx"), str(work / "recurrent.dynamic.onnx"), weight_type=QuantType.QInt8)
    alone = {
        "recurrent layer alone, fp32": work / "recurrent.onnx",
        "recurrent layer alone, ORT dynamic int8": work / "recurrent.dynamic.onnx",
    }
    samples: dict[tuple[str, int], list[dict[str, float]]] = collections.defaultdict(list)
    shares: dict[str, list[float]] = collections.defaultdict(list)
    started = machine()
    for number in range(args.rounds):
        for threads in (1, 2):
            for name, path in models.items():
                print(f"round {number + 1}/{args.rounds}: {name}, {threads} thread(s)", file=sys.stderr)
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                done = subprocess.run(
                    [sys.executable, __file__, args.bundle, "--batches", str(args.batches), "--child", str(path), str(threads)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                samples[(name, threads)].append(json.loads(done.stdout))
        for name, path in {**models, **alone}.items():
            done = subprocess.run(
                [sys.executable, __file__, args.bundle, "--batches", str(args.batches), "--share", str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            cpu = json.loads(done.stdout)
            shares[name].append(2 * cpu["pool_s"] / cpu["total_s"])
    print(
        f"CPU {started['cpu']}, {started['usable_cores']} usable cores; "
        f"load average {started.get('load_average_1min')} at start, "
        f"{machine().get('load_average_1min')} at end; text graphs at batch 256 (built-in sentences), "
        f"ONNX Runtime's per-operator profile, "
        f"median of {args.rounds} interleaved rounds of {args.batches} batches, ms per batch."
    )
    print()
    for name in models:
        groups = sorted(
            {g for t in (1, 2) for s in samples[(name, t)] for g in s if g != "wall"},
            key=lambda g: -statistics.median(s.get(g, 0.0) for s in samples[(name, 1)]),
        )
        print(f"**{name}**")
        print()
        print("| part | ms, 1 thread | ms, 2 threads | speed-up |")
        print("|---|---:|---:|---:|")
        for group in [*groups, "wall"]:
            one = statistics.median(s.get(group, 0.0) for s in samples[(name, 1)])
            two = statistics.median(s.get(group, 0.0) for s in samples[(name, 2)])
            label = "whole call (wall)" if group == "wall" else group
            print(f"| {label} | {one:.2f} | {two:.2f} | {one / two if two else float('nan'):.2f}x |")
        print()
    print(
        f"Parallel share of the work (CPU time of the pool thread at 2 threads, spinning off, {4 * args.batches} batches; "
        "median and range of the rounds) and the speed-up it allows a second thread:"
    )
    print()
    print("| model | parallel share | Amdahl bound, 2 threads |")
    print("|---|---:|---:|")
    for name, values in shares.items():
        p = statistics.median(values)
        print(f"| {name} | {100 * p:.0f}% ({100 * min(values):.0f}-{100 * max(values):.0f}) | {1 / (1 - p / 2):.2f}x |")
    print()


if __name__ == "__main__":
    main()

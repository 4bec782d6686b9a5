"""One-text latency of an ensemble against one of its members, under ONNX Runtime's sequential and
parallel executors.

From a trained run, builds the direct ids graph (rnnonnx.fastgraph) of the whole model, of the
model without its linear member and of its first member alone, each with its embedding tables int8
as a bundle stores them (rnnonnx.quantize.quantize_int8: the table scaled back to fp32 before its
Gather, which ONNX Runtime folds at load), and the whole model once more with the int8 rows
gathered and scaled at every call instead, and the ensemble cut in two parts (its first two
members; the others and the linear member), each graph in its own one-thread InferenceSession, the
two run at once from two Python threads, their outputs blended in numpy (timing only), and the text
graphs (tokenization in the graph, as a bundle's ``model.text.onnx``) of the whole model and of the
member; then times one text per call (the built-in sentences: Python-tokenized ids, or the raw
text for a text graph) in fresh processes, the configurations taking turns round after round;
prints the median latency of each and, within each round, its ratio to the member (the member's
text graph for a text graph).

    python benchmarks/ensemble_latency.py runs/lstm --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = {  # name -> (model, intra-op threads, inter-op threads, parallel executor)
    "member, 1 thread": ("member", 1, 1, False),
    "ensemble, 1 thread": ("ensemble", 1, 1, False),
    "ensemble without its linear member, 1 thread": ("recurrent", 1, 1, False),
    "ensemble, int8 rows scaled at every call, 1 thread": ("per-call", 1, 1, False),
    "member, 2 threads": ("member", 2, 1, False),
    "ensemble, 2 threads": ("ensemble", 2, 1, False),
    "ensemble, parallel executor, 2 inter-op threads": ("ensemble", 1, 2, True),
    "ensemble without its linear member, 2 threads": ("recurrent", 2, 1, False),
    "ensemble without its linear member, parallel executor, 2 inter-op threads": ("recurrent", 1, 2, True),
    "ensemble as two graphs run at once, one thread each": ("parts", 1, 1, False),
    "member, text graph, 1 thread": ("member-text", 1, 1, False),
    "ensemble, text graph, 1 thread": ("ensemble-text", 1, 1, False),
    "member, text graph, 2 threads": ("member-text", 2, 1, False),
    "ensemble, text graph, 2 threads": ("ensemble-text", 2, 1, False),
}


def scaled_per_call(model_bytes: bytes) -> bytes:
    """The graph of :func:`rnnonnx.quantize.quantize_int8` with each table's int8 rows gathered
    first and scaled back after (``Gather`` of the rows and of their scales, ``Cast``, ``Mul`` at
    every call), the layout it replaced."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model_bytes)
    folded = {n.output[0] for n in model.graph.node if n.op_type == "Mul" and n.input[0].endswith("/float")}
    nodes = []
    for node in model.graph.node:
        if node.output[0] in folded or node.output[0].endswith("/float"):
            continue
        nodes.append(node)
        if node.op_type == "Gather" and node.input[0] in folded:
            table, out = node.input[0], node.output[0]
            node.input[0], node.output[0] = f"{table}/int8", f"{out}/int8"
            nodes += [
                helper.make_node("Gather", [f"{table}/row_scale", node.input[1]], [f"{out}/scale"], axis=0),
                helper.make_node("Cast", [f"{out}/int8"], [f"{out}/float"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{out}/float", f"{out}/scale"], [out]),
            ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build(run_dir: Path, out: Path) -> None:
    """Write the graphs of :data:`CONFIGS` and ``ids.json`` (1,000 tokenized sentences) to ``out``."""
    from dataclasses import replace

    import onnx

    from rnnonnx import fastgraph
    from rnnonnx.data import read_builtin
    from rnnonnx.model import Ensemble
    from rnnonnx.quantize import quantize_int8
    from rnnonnx.run import load_run
    from rnnonnx.textgraph import text_model

    def stored(model) -> bytes:  # the tables int8, as a bundle ships them
        return quantize_int8(fastgraph.ids_model(model).SerializeToString())[0]

    run = load_run(run_dir)
    model = run.model.eval()
    (out / "ensemble.onnx").write_bytes(stored(model))
    (out / "per-call.onnx").write_bytes(scaled_per_call(stored(model)))
    linear = getattr(model, "linear", None)
    model.linear = None
    (out / "recurrent.onnx").write_bytes(stored(model))
    model.linear = linear
    config = model.config
    if isinstance(model, Ensemble) and len(model.members) > 1:
        members = list(model.members)
        plain = replace(config, temperature=1.0, linear_weight=0.0, members=2)
        (out / "part-a.onnx").write_bytes(stored(Ensemble(members[:2], plain)))
        rest = replace(config, temperature=1.0, members=len(members) - 2)
        (out / "part-b.onnx").write_bytes(stored(Ensemble(members[2:] or members[:1], rest, linear=linear)))
    first = model.members[0] if isinstance(model, Ensemble) else model
    first.config = replace(first.config, temperature=1.0)
    (out / "member.onnx").write_bytes(stored(first))
    for name in ("ensemble", "member"):
        graph = text_model(onnx.load_from_string((out / f"{name}.onnx").read_bytes()), run.tokenizer)
        (out / f"{name}-text.onnx").write_bytes(graph.SerializeToString())
    texts = read_builtin().texts[:1000]
    (out / "ids.json").write_text(json.dumps([run.tokenizer.encode(t) or [0] for t in texts]))
    (out / "texts.json").write_text(json.dumps(texts))


class SideBySide:
    """Runs ``part-a`` on the calling thread and ``part-b`` on a second Python thread at once, then blends
    their probabilities and takes the softmax of their log, as the whole graph does: the work of a
    call, for timing (``part-b`` blends its member with the linear member already, so this blend is
    not the model's)."""

    def __init__(self, folder: Path, options: Any) -> None:
        import threading

        import onnxruntime as ort

        self.first, self.second = (
            ort.InferenceSession(str(folder / f"part-{k}.onnx"), options, providers=["CPUExecutionProvider"]) for k in "ab"
        )
        self.go, self.done, self.box = threading.Event(), threading.Event(), {}
        threading.Thread(target=self._second, daemon=True).start()

    def _second(self) -> None:
        while True:
            self.go.wait()
            self.go.clear()
            self.box["b"] = self.second.run(["probabilities"], {"input_ids": self.box["row"]})[0]
            self.done.set()

    def run(self, _: Any, feed: dict[str, Any]) -> Any:
        import numpy as np

        self.box["row"] = feed["input_ids"]
        self.done.clear()
        self.go.set()
        first = self.first.run(["probabilities"], feed)[0]
        self.done.wait()
        scores = np.log(np.maximum((2 * first + self.box["b"]) / 3, np.finfo(np.float32).tiny))
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def measure(folder: Path, model: str, intra: int, inter: int, parallel: bool, seconds: float) -> float:
    """Median seconds per one-text call, in this process."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = intra, inter
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if model == "parts":
        session = SideBySide(folder, options)
    else:
        session = ort.InferenceSession(str(folder / f"{model}.onnx"), options, providers=["CPUExecutionProvider"])
    if model.endswith("-text"):
        feeds = [{"text": np.array([text], dtype=object)} for text in json.loads((folder / "texts.json").read_text())]
    else:
        feeds = [{"input_ids": np.array([ids], dtype=np.int64)} for ids in json.loads((folder / "ids.json").read_text())]
    for feed in feeds[:50]:
        session.run(None, feed)
    times, end, k = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        feed = feeds[k % len(feeds)]
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
        k += 1
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory with pooling last (the direct graph)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per configuration and round")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        folder, model, intra, inter, parallel = args.worker
        print(measure(Path(folder), model, int(intra), int(inter), parallel == "1", args.seconds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(args.run, folder)
        results: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for _ in range(args.rounds):
            for name, (model, intra, inter, parallel) in CONFIGS.items():
                worker = [str(folder), model, str(intra), str(inter), "1" if parallel else "0"]
                command = [sys.executable, __file__, str(args.run), "--seconds", str(args.seconds), "--worker", *worker]
                results[name].append(float(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    print("| configuration | p50 latency, ms (median of rounds, min-max) | / member at the same threads (median, min-max) |")
    print("|---|---:|---:|")
    for name, values in results.items():
        model, intra, inter, _ = CONFIGS[name]
        threads = "2 threads" if max(intra, inter) > 1 or model == "parts" else "1 thread"
        base = results[f"member, {'text graph, ' if model.endswith('-text') else ''}{threads}"]
        ratios = [v / b for v, b in zip(values, base)]
        print(
            f"| {name} | {1e3 * statistics.median(values):.3f} ({1e3 * min(values):.3f}-{1e3 * max(values):.3f}) | "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()

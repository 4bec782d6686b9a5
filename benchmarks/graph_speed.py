"""Which graph should the predictor run by default: ids (tokenize in Python) or text-in (tokenize
inside ONNX Runtime)? Times ``Predictor.predict_proba`` end to end, tokenization included, at
batch 1 and batch 256 on the built-in sentences, rounds of the two graphs interleaved so that
load from other processes hits both alike.

    python benchmarks/graph_speed.py BUNDLE [--threads 1] [--seconds 2] [--rounds 5] [--int8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import onnxruntime

from rnnonnx.data import read_builtin
from rnnonnx.machine import cpu_name
from rnnonnx.predictor import Predictor

BATCHES = (1, 256)
GRAPHS = ("ids", "text")


def texts_per_second(call: Callable[[list[str]], np.ndarray], texts: list[str], batch: int, seconds: float) -> float:
    """Texts classified per second, calling ``call`` on consecutive slices of ``batch`` texts."""
    call(texts[:batch])
    done, start, position = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = texts[position : position + batch]
        if len(chunk) < batch:
            position, chunk = 0, texts[:batch]
        call(chunk)
        done += len(chunk)
        position += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1: steadier on a shared machine)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per graph and batch size (median reported)")
    parser.add_argument("--int8", action="store_true", help="time the int8 models instead of fp32")
    args = parser.parse_args()

    precision = "int8" if args.int8 else "fp32"
    texts = read_builtin().texts
    predictors = {
        g: Predictor(args.bundle, device="cpu", threads=args.threads, batch_size=max(BATCHES), precision=precision, graph=g)
        for g in GRAPHS
    }
    results: dict[tuple[str, int], list[float]] = {(g, b): [] for g in GRAPHS for b in BATCHES}
    for _ in range(args.rounds):
        for batch in BATCHES:
            for graph in GRAPHS:
                results[(graph, batch)].append(texts_per_second(predictors[graph].predict_proba, texts, batch, args.seconds))

    model = predictors["ids"].bundle.manifest.get("model", {})
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} logical cores visible), onnxruntime {onnxruntime.__version__}, "
        f"threads {args.threads}, {precision}"
    )
    print(
        f"model: {model.get('arch')} embed {model.get('embed_dim')} hidden {model.get('hidden')}, "
        f"{len(texts):,} built-in sentences, median of {args.rounds} rounds x {args.seconds:g}s"
    )
    print(f"{'batch':>5}  {'graph':<5}  {'texts/s':>9}  {'ms/call':>8}  {'vs ids':>6}")
    for batch in BATCHES:
        base = statistics.median(results[("ids", batch)])
        for graph in GRAPHS:
            rate = statistics.median(results[(graph, batch)])
            print(f"{batch:>5}  {graph:<5}  {rate:>9,.0f}  {1000 * batch / rate:>8.3f}  {rate / base:>5.2f}x")


if __name__ == "__main__":
    main()

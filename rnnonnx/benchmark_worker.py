"""One engine's timings in a process of its own, run by ``rnnonnx bench``: one process per engine
per round.

ONNX Runtime and PyTorch each keep a thread pool; in one process they would compete for the
cores and skew each other, and a pool left idle in a long-lived worker may still spin for a
while after its last call. So every measurement runs in a fresh interpreter that exits before
the next one starts: nothing of another engine is alive while one is timed. The task comes
as JSON on stdin, the result goes as JSON on stdout. The ``gemm`` engine is the machine's
reference: a large single-precision matrix product in numpy on the same thread count. ``--cold-torch RUN TEXT`` is the PyTorch
side of the cold-start comparison: import torch, load the weights, predict one text, print.
Module-level imports stay light so that the cold start measures the engine, not this file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

BATCH_SIZES = (32, 256)
PROBE_ROWS = 64
MIN_LATENCY_RUNS = 20
MIN_BATCH_RUNS = 3
WARMUP = 3
# Square fp32 matrices of the reference product: large enough for the BLAS to run at its peak
# (2 * 1024**3, about 2.1 GFLOP per product: tens of milliseconds on one core).
GEMM_SIZE = 1024

Engine = Callable[[Sequence[str]], Any]


def ort_engine(task: dict[str, Any]) -> tuple[Engine, dict[str, Any]]:
    """The shipped predictor with the bundle's fp32 or int8 model, in the graph asked for, at its default
    call size (a batch of 256 texts runs as the predictor splits it for a user)."""
    import numpy
    import onnxruntime

    from .predictor import Predictor

    predictor = Predictor(
        task["bundle"],
        device="cpu",
        threads=task["threads"],
        precision=task["precision"],
        graph=task["graph"],
    )
    return predictor.predict_proba, {
        "model": f"{predictor.model_file} ({predictor.graph} graph)",
        "versions": {"onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__},
    }


def torch_engine(task: dict[str, Any]) -> tuple[Engine, dict[str, Any]]:
    """PyTorch eager on the run's weights, with the same tokenizer and thread count."""
    import torch

    torch.set_num_threads(task["threads"])
    torch.set_num_interop_threads(1)
    from .run import WEIGHTS, load_run

    run = load_run(task["run"])
    if task.get("stored_embeddings"):
        from .storage import store_embeddings

        store_embeddings(run.model)
    model = run.model.eval()

    def predict(texts: Sequence[str]) -> Any:
        ids = torch.from_numpy(run.tokenizer.encode_batch(texts))
        with torch.inference_mode():
            return torch.softmax(model(ids), dim=-1).numpy()

    return predict, {"model": f"{WEIGHTS} (eager)", "versions": {"torch": torch.__version__}}


def cycled(texts: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive batches of ``size`` texts covering the list once (wrapping at the end)."""
    count = max(1, len(texts) // size)
    return [[texts[(k * size + j) % len(texts)] for j in range(size)] for k in range(count)]


def gemm_peak(seconds: float, size: int = GEMM_SIZE) -> dict[str, Any]:
    """GFLOP/s of repeated ``size`` x ``size`` fp32 products (numpy's BLAS, its thread count set
    by the environment), after one unmeasured product: what these cores reach on dense arithmetic."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), dtype=np.float32), rng.standard_normal((size, size), dtype=np.float32)
    out = a @ b
    runs, busy = 0, 0.0
    while runs < 2 or busy < seconds:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        busy += time.perf_counter() - t0
        runs += 1
    return {"gflops": 2.0 * size**3 * runs / busy / 1e9, "size": size, "products": runs, "versions": {"numpy": np.__version__}}


def measure(predict: Engine, texts: Sequence[str], seconds: float, probe: bool = True) -> dict[str, Any]:
    """Latency of one text (p50/p95) and throughput at each batch size, each for about
    ``seconds``; with ``probe``, also the probabilities of the first texts (for parity)."""
    import numpy as np

    probabilities = np.asarray(predict(list(texts[:PROBE_ROWS])), dtype=np.float64) if probe else None
    for text in texts[:WARMUP]:
        predict([text])
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MIN_LATENCY_RUNS or time.perf_counter() - started < seconds:
        text = texts[len(times) % len(texts)]
        t0 = time.perf_counter()
        predict([text])
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    result: dict[str, Any] = {
        "latency_ms": {
            "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)),
            "mean": float(ms.mean()),
            "runs": len(ms),
        },
        "throughput": {},
    }
    if probabilities is not None:
        result["probe"] = probabilities.tolist()
    for size in BATCH_SIZES:
        batches = cycled(texts, size)
        predict(batches[0])
        runs, busy = 0, 0.0
        while runs < MIN_BATCH_RUNS or busy < seconds:
            t0 = time.perf_counter()
            predict(batches[runs % len(batches)])
            busy += time.perf_counter() - t0
            runs += 1
        result["throughput"][str(size)] = {"texts_per_s": runs * size / busy, "batches": runs}
    return result


def cold_torch(run_dir: str, text: str) -> None:
    """What a user script on the training stack does to classify one sentence."""
    import torch

    from .run import load_run

    run = load_run(run_dir)
    with torch.inference_mode():
        proba = torch.softmax(run.model(torch.from_numpy(run.tokenizer.encode_batch([text]))), dim=-1)[0]
    best = int(proba.argmax())
    print(f"{run.labels[best]}\t{float(proba[best]):.4f}\t{text}")


def main(argv: list[str]) -> int:
    from .errors import RnnonnxError

    if argv[:1] == ["--cold-torch"]:
        cold_torch(argv[1], argv[2])
        return 0
    task = json.load(sys.stdin)
    if task["engine"] == "gemm":
        json.dump(gemm_peak(task["seconds"]), sys.stdout)
        return 0
    engine = torch_engine if task["engine"] == "torch" else ort_engine
    try:
        predict, info = engine(task)
    except RnnonnxError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = {**info, **measure(predict, task["texts"], task["seconds"], task.get("probe", True))}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Does ``export --quantize int8`` keep accuracy, and its batch independence, on other data?

For each set of the benchmark suite with a trained rnnonnx run (``benchmarks/suite.py``), the run
is exported again with ``--quantize int8`` into a temporary folder, and its test texts are scored
once by the fp32 and the int8 bundle (``Predictor``, graph ``auto``): test accuracy of each, the
largest |difference| of a text's probabilities between them, and the largest change of a test
text's int8 probabilities between running it alone and in other batches (the compositions export
uses, on up to ``--rows`` test texts), beside the same figure for fp32 (float rounding) and for an
int8 twin with the batch's scales (:func:`rnnonnx.quantize.quantize_kernels` with ``pin=False``)
built from the same graph.

Then the speed an app sees: texts/s of ``rnnonnx.load(bundle, precision=..., threads=...)``
classifying the whole test file in one ``predict`` call, fp32 and int8 taking turns in fresh
processes (``--rounds`` rounds; fp32 first in even rounds, int8 first in odd ones), at each
``--threads``; int8/fp32 is taken within each round before the median.

    python benchmarks/int8_suite.py [--out /tmp/rnnonnx-suite] [--only debian-en,kernel-docs]
        [--threads 1 --threads 2] [--rounds 3] [--seconds 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import SETS, read_rows  # noqa: E402  (benchmarks/ is a folder of scripts)

PRECISIONS = ("fp32", "int8")
RECURRENT = ("LSTM", "DynamicQuantizeLSTM", "GRU", "RNN")
# Profiled passes over the test file per graph (after one warm-up pass).
PROFILE_PASSES = 5
# Calls of the whole file per measurement, at least (after one call that warms up).
MIN_CALLS = 2


def api_speed(bundle: Path, precision: str, threads: int, texts: list[str], seconds: float) -> float:
    """texts/s of the Python API classifying ``texts`` in one ``predict`` call, as an app scoring a
    file does: one call to warm up, then calls for about ``seconds`` (at least ``MIN_CALLS``)."""
    import rnnonnx

    predictor = rnnonnx.load(bundle, precision=precision, threads=threads)
    predictor.predict(texts)
    calls, busy = 0, 0.0
    while calls < MIN_CALLS or busy < seconds:
        started = time.perf_counter()
        predictor.predict(texts)
        busy += time.perf_counter() - started
        calls += 1
    return calls * len(texts) / busy


def speed_in_process(job: dict[str, Any]) -> float:
    """:func:`api_speed` in a fresh interpreter (this script with ``--speed-worker``), so that no
    other measurement's sessions or threads are alive while it runs."""
    from rnnonnx.benchmark import thread_env

    proc = subprocess.run(
        [sys.executable, __file__, "--speed-worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=thread_env(job["threads"]),
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise SystemExit(f"speed worker for {job['bundle']} ({job['precision']}) failed: {lines[-1]}")
    return float(proc.stdout)


def speed_rounds(
    bundle: Path, test_file: Path, threads: list[int], rounds: int, seconds: float, measure: Any = speed_in_process
) -> dict[int, dict[str, list[float]]]:
    """fp32 and int8 texts/s at each thread count per round, and int8/fp32 within each round."""
    found: dict[int, dict[str, list[float]]] = {t: {"fp32": [], "int8": [], "ratio": []} for t in threads}
    for round_ in range(rounds):
        for t in threads:
            order = PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]
            got = {
                p: measure({"bundle": str(bundle), "test_file": str(test_file), "precision": p, "threads": t, "seconds": seconds})
                for p in order
            }
            for p in PRECISIONS:
                found[t][p].append(got[p])
            found[t]["ratio"].append(got["int8"] / got["fp32"])
    return found


def recurrent_bound(fp32: dict[str, float], int8: dict[str, float]) -> dict[str, float]:
    """Why int8 gains what it gains, from kernel time per operator type (ONNX Runtime's profile
    of each text graph on the same calls): the recurrent layers' share of fp32's time, how much
    faster int8 runs them, and the whole call's speed-up that allows when nothing else changes
    (Amdahl's law; the int8 twin's own extra operators make the real figure lower)."""
    layers = {kind: sum(v for op, v in kernel.items() if op in RECURRENT) for kind, kernel in (("fp32", fp32), ("int8", int8))}
    share = layers["fp32"] / sum(fp32.values())
    faster = layers["fp32"] / layers["int8"]
    return {"share": share, "layers": faster, "bound": 1 / ((1 - share) + share / faster)}


def profiled_bound(bundle: Path, texts: list[str]) -> dict[str, float]:
    """:func:`recurrent_bound` of the bundle's text graphs on one thread, the test texts split as
    the predictor splits them."""
    from op_profile import profile

    from rnnonnx.bundle import TEXT_INT8_MODEL, TEXT_MODEL, Bundle
    from rnnonnx.predictor import CPU_CALL_SIZE, text_calls

    calls, _ = text_calls(texts, Bundle(bundle).tokenizer.spec, CPU_CALL_SIZE)
    batches = [[texts[i] for i in chosen] for chosen in calls]
    fp32, int8 = (profile(str(bundle), batches, 1, PROFILE_PASSES, model) for model in (TEXT_MODEL, TEXT_INT8_MODEL))
    return recurrent_bound(fp32, int8)


def speed_worker(job: dict[str, Any]) -> None:
    texts, _ = read_rows(Path(job["test_file"]))
    print(api_speed(Path(job["bundle"]), job["precision"], job["threads"], texts, job["seconds"]))


def speed_cells(found: dict[str, list[float]]) -> str:
    """fp32 texts/s, int8 texts/s and int8/fp32: median (min-max) of the rounds."""
    from rnnonnx.benchmark import spread

    cells = []
    for key, form in (("fp32", "{:,.0f}"), ("int8", "{:,.0f}"), ("ratio", "{:.2f}")):
        s = spread(found[key])
        unit = "x" if key == "ratio" else ""
        cells.append(f"{form.format(s['median'])}{unit} ({form.format(s['min'])}-{form.format(s['max'])})")
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> None:
    from rnnonnx.bundle import Bundle
    from rnnonnx.exporting import export_run, session_for, stored_model
    from rnnonnx.machine import machine
    from rnnonnx.predictor import Predictor
    from rnnonnx.quantize import batch_dependence, quantize_kernels
    from rnnonnx.run import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-suite"), help="the suite's --out (splits and runs)")
    parser.add_argument("--only", default="", help="comma-separated set names (default: every set with a run)")
    parser.add_argument("--rows", type=int, default=250, help="test texts for the batch-independence figures")
    parser.add_argument("--threads", type=int, action="append", help="thread counts of the speed table (default 1 and 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed table")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per speed measurement, at least")
    parser.add_argument("--speed-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_worker:
        return speed_worker(json.loads(args.speed_worker))
    threads = args.threads or [1, 2]
    if min(threads) < 1 or args.rounds < 1 or args.seconds < 0:
        parser.error("--threads and --rounds must be at least 1, --seconds at least 0")
    names = [n for n in args.only.split(",") if n] or list(SETS)
    started = machine()
    print(
        f"CPU {started['cpu']}, {started['usable_cores']} usable cores; onnxruntime's default threads; "
        "test accuracy scored once per bundle\n"
    )
    print(
        "| set | test texts | pooling | test acc fp32 | test acc int8 | max |dp| int8 vs fp32 "
        "| alone vs batched, fp32 | alone vs batched, int8 | alone vs batched, int8 with the batch's scales |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    speeds: list[str] = []
    for name in names:
        run_dir = args.out / "models" / name / "rnnonnx" / "run"
        test_file = args.out / "splits" / name / "test.csv"
        if not (run_dir / "config.json").exists() or not test_file.exists():
            continue
        texts, gold = read_rows(test_file)
        with tempfile.TemporaryDirectory(prefix="rnnonnx-int8-suite-") as tmp:
            bundle = Path(tmp) / "bundle"
            export_run(run_dir, bundle, log=lambda message: None, quantize="int8")
            scores, probabilities = {}, {}
            for precision in ("fp32", "int8"):
                predictor = Predictor(bundle, precision=precision)
                probabilities[precision] = predictor.predict_proba(texts)
                chosen = [predictor.labels[i] for i in probabilities[precision].argmax(axis=1)]
                scores[precision] = 100.0 * float(np.mean([c == g for c, g in zip(chosen, gold, strict=True)]))
            manifest = Bundle(bundle).manifest
            found = speed_rounds(bundle, test_file, threads, args.rounds, args.seconds)
            bound = profiled_bound(bundle, texts)
            model = manifest["model"]
            speeds.append(
                f"| {name} | {len(texts):,} | {model['arch']} x {model['members']}, hidden {model['hidden']}, "
                f"{model['recurrent_len']} tokens | " + " | ".join(speed_cells(found[t]) for t in threads) + " | "
                f"{100 * bound['share']:.0f}% | {bound['layers']:.2f}x | {bound['bound']:.2f}x |"
            )
        run = load_run(run_dir)
        fp32_ids = stored_model(run, lambda message: None)[0]
        sample = texts[: args.rows]
        graphs = {
            "fp32": fp32_ids,
            "int8": quantize_kernels(fp32_ids)[0],
            "batch scales": quantize_kernels(fp32_ids, pin=False)[0],
        }
        moved = {
            kind: batch_dependence(session_for(graph), run.tokenizer, sample)["max_abs_diff"] for kind, graph in graphs.items()
        }
        print(
            f"| {name} | {len(texts):,} | {manifest['model']['pooling']} | {scores['fp32']:.1f} | {scores['int8']:.1f} "
            f"| {np.abs(probabilities['fp32'] - probabilities['int8']).max():.2e} | {moved['fp32']:.2e} "
            f"| {moved['int8']:.2e} | {moved['batch scales']:.2e} |",
            flush=True,
        )

    if speeds:
        print(
            f"\nPython API speed (`rnnonnx.load(bundle, precision=..., threads=N).predict(test texts)`, the whole file per "
            f"call), texts/s, median (min-max) of {args.rounds} interleaved round(s) in fresh processes; the model column "
            "gives the recurrent layers' tokens per text at most. The last three columns come from ONNX Runtime's profile "
            f"of the text graphs on one thread ({PROFILE_PASSES} passes over the test texts, split as the predictor splits "
            "them): the recurrent layers' share of fp32's kernel time, how much faster int8 runs them, and the speed-up "
            "that allows the whole call if nothing else changed (Amdahl's law)\n"
        )
        head = [f"fp32 texts/s, {t} thread(s) | int8 texts/s, {t} thread(s) | int8 vs fp32, {t} thread(s)" for t in threads]
        tail = "recurrent share of fp32 | int8 recurrent layers vs fp32 | Amdahl bound"
        print("| set | test texts | model | " + " | ".join(head) + f" | {tail} |")
        print("|---|---:|---|" + "---:|" * (3 * len(threads) + 3))
        print("\n".join(speeds))


if __name__ == "__main__":
    main()

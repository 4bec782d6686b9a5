"""Does ``export --quantize int8`` keep accuracy, and its batch independence, on other data?

For each set of the benchmark suite with a trained rnnonnx run (``benchmarks/suite.py``), the run
is exported again with ``--quantize int8`` into a temporary folder, and its test texts are scored
once by the fp32 and the int8 bundle (``Predictor``, graph ``auto``): test accuracy of each, the
largest |difference| of a text's probabilities between them, and the largest change of a test
text's int8 probabilities between running it alone and in other batches (the compositions export
uses, on up to ``--rows`` test texts), beside the same figure for fp32 (float rounding) and for an
int8 twin with the batch's scales (:func:`rnnonnx.quantize.quantize_kernels` with ``pin=False``)
built from the same graph.

    python benchmarks/int8_suite.py [--out /tmp/rnnonnx-suite] [--only debian-en,kernel-docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import SETS, read_rows  # noqa: E402  (benchmarks/ is a folder of scripts)


def main() -> None:
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()

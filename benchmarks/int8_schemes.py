"""Which int8 scheme should ``rnnonnx export --quantize int8`` write? Six candidates built from
the same run, side by side: accuracy, how far a text's probabilities move with its batch, file
size, and speed against fp32 in interleaved rounds (``rnnonnx bench``'s workers: one fresh
process per model per round, one at a time; every ratio taken within its round).

- ``dynamic``: ONNX Runtime ``quantize_dynamic`` on every operator it covers (int8 LSTM kernel,
  ``MatMulInteger`` products, int8 gathers), activations scaled per batch.
- ``LSTM kernel`` (what export writes for an LSTM model, :func:`rnnonnx.quantize.quantize_kernels`):
  the LSTM layers alone on ONNX Runtime's int8 kernel with their ranges fixed (:mod:`rnnonnx.pinning`),
  embedding tables int8 per row, the rest fp32.
- ``LSTM kernel, batch scales``: the same without fixed ranges, the kernel's scales taken from the
  batch: what the sentinel units cost, and what they buy.
- ``static QDQ``: ``quantize_static`` with per-tensor activation scales calibrated on the
  validation texts (MatMul/Gemm/Gather; ONNX Runtime has no static recurrent kernel).
- ``weights int8`` (what export writes for a GRU or RNN model, :func:`rnnonnx.quantize.quantize_weights`):
  every embedding, recurrent and output weight int8 per row, dequantized in the graph, arithmetic fp32.
- ``embeddings int8`` (the default graphs of every bundle): the embedding tables int8 per row,
  gathered then scaled; everything else fp32.

Every scheme starts from the ids graph export writes (the direct graph where it covers the model).
Accuracy and agreement are measured on the run's test texts (the static scheme calibrates on
the validation texts).

    python benchmarks/int8_schemes.py RUN_DIR [--threads 1 --threads 2] [--rounds 5] [--seconds 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rnnonnx.benchmark import aggregate, batch_flops, figures, run_worker
from rnnonnx.bundle import INT8_MODEL, MODEL, TEXT_INT8_MODEL, TEXT_MODEL, write_bundle
from rnnonnx.exporting import direct_onnx, quiet_exporter, session_for, to_onnx
from rnnonnx.machine import machine
from rnnonnx.quantize import accuracy, batch_dependence, quantize_int8, quantize_kernels, quantize_weights
from rnnonnx.run import Run, load_run

FP32 = "fp32"
BASE = "dynamic"


def fp16_gathers(model_bytes: bytes) -> list[str]:
    """The Gather nodes reading an fp16 table (the linear member's idf): ONNX Runtime's quantizers
    would give them an fp16 scale, which ``DequantizeLinear`` of opset 17 refuses, so they stay as they are."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    half = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    return [n.name for n in graph.node if n.op_type == "Gather" and n.input[0] in half]


def dynamic(model_bytes: bytes, run: Run) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.onnx").write_bytes(model_bytes)
        quantize_dynamic(
            str(Path(tmp) / "in.onnx"),
            str(Path(tmp) / "out.onnx"),
            weight_type=QuantType.QInt8,
            nodes_to_exclude=fp16_gathers(model_bytes),
        )
        return (Path(tmp) / "out.onnx").read_bytes()


def static_qdq(model_bytes: bytes, run: Run) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    texts, _ = run.held_out("validation")

    class Validation(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input_ids": run.tokenizer.encode_batch(texts[i : i + 64])} for i in range(0, len(texts), 64)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.onnx").write_bytes(model_bytes)
        quantize_static(
            str(Path(tmp) / "in.onnx"),
            str(Path(tmp) / "out.onnx"),
            Validation(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm", "Gather"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=fp16_gathers(model_bytes),
        )
        return (Path(tmp) / "out.onnx").read_bytes()


def embeddings(model_bytes: bytes, run: Run) -> bytes:
    return quantize_int8(model_bytes)[0]


SCHEMES: dict[str, Callable[[bytes, Run], bytes]] = {
    BASE: dynamic,
    "LSTM kernel": lambda model_bytes, run: quantize_kernels(model_bytes)[0],
    "LSTM kernel, batch scales": lambda model_bytes, run: quantize_kernels(model_bytes, pin=False)[0],
    "static QDQ": static_qdq,
    "weights int8": lambda model_bytes, run: quantize_weights(model_bytes)[0],
    "embeddings int8": embeddings,
}


def main() -> None:
    import onnx

    from rnnonnx.textgraph import text_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--threads", type=int, action="append", help="thread count; repeat for several (default 1 and 2)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement in each round")
    parser.add_argument("--graph", choices=["ids", "text"], default="text")
    args = parser.parse_args()
    threads = args.threads or [1, 2]
    run = load_run(args.run)
    with quiet_exporter():
        fp32 = direct_onnx(run) or to_onnx(run)
    texts, gold = run.held_out("test")
    reference = session_for(fp32)
    ref_proba = np.concatenate(
        [
            reference.run(["probabilities"], {"input_ids": run.tokenizer.encode_batch(texts[i : i + 256])})[0]
            for i in range(0, len(texts), 256)
        ]
    )
    rows: dict[str, dict[str, Any]] = {
        FP32: {
            "bytes": len(fp32),
            "accuracy": accuracy(reference, run.tokenizer, run.labels, texts, gold),
            "moved": batch_dependence(reference, run.tokenizer, texts)["max_abs_diff"],
            "vs_fp32": 0.0,
        }
    }
    work = Path(tempfile.mkdtemp(prefix="int8-schemes-"))
    bundles = {}
    for name, build in {FP32: lambda b, r: b, **SCHEMES}.items():
        quantized = build(fp32, run)
        session = session_for(quantized)
        if name != FP32:
            proba = np.concatenate(
                [
                    session.run(["probabilities"], {"input_ids": run.tokenizer.encode_batch(texts[i : i + 256])})[0]
                    for i in range(0, len(texts), 256)
                ]
            )
            rows[name] = {
                "bytes": len(quantized),
                "accuracy": accuracy(session, run.tokenizer, run.labels, texts, gold),
                "moved": batch_dependence(session, run.tokenizer, texts)["max_abs_diff"],
                "vs_fp32": float(np.abs(proba - ref_proba).max()),
            }
        files = {
            MODEL: fp32,
            TEXT_MODEL: text_model(onnx.load_from_string(fp32), run.tokenizer).SerializeToString(),
            INT8_MODEL: quantized,
            TEXT_INT8_MODEL: text_model(onnx.load_from_string(quantized), run.tokenizer).SerializeToString(),
        }
        bundles[name] = write_bundle(
            work / name.replace(",", "").replace(" ", "-"), files, run.tokenizer, run.labels, {"model": run.config["model"]}
        )
    from rnnonnx.data import read_builtin

    timed = read_builtin().texts
    steps = [max(1, len(run.tokenizer.encode(t))) for t in timed]
    started = machine()
    flat: dict[int, list[dict[str, dict[str, float]]]] = {t: [] for t in threads}
    for number in range(args.rounds):
        for count in threads:
            measured = {}
            for name, path in bundles.items():
                print(f"round {number + 1}/{args.rounds}, {count} thread(s): {name}", file=sys.stderr)
                task = {
                    "name": name,
                    "engine": "ort",
                    "precision": "fp32" if name == FP32 else "int8",
                    "graph": args.graph,
                    "bundle": str(path),
                    "threads": count,
                    "seconds": args.seconds,
                    "texts": timed,
                    "probe": False,
                }
                m = run_worker(task, count)
                measured[name] = figures(m, batch_flops(run.config["model"], steps, m["throughput"]["256"]["batches"]))
            flat[count].append(measured)
    summaries = {count: aggregate(flat[count], base=BASE) for count in threads}
    end = machine()
    print(
        f"Run {args.run} ({run.config['model']['arch']}, {run.config['model'].get('members', 1)} member(s)); "
        f"CPU {started['cpu']}, "
        f"{started['usable_cores']} usable cores; load average {started.get('load_average_1min')} at start, "
        f"{end.get('load_average_1min')} at end; "
        f"{args.rounds} interleaved rounds of {args.seconds:g}s per measurement, {args.graph} graph, texts/s at batch 256 "
        f"on the built-in sentences; accuracy and agreement on the {len(texts)} test texts."
    )
    print()
    header = ["model", "test accuracy", "max |dp| vs fp32", "alone vs batched max |dp|", "ids graph MiB"]
    for count in threads:
        header += [
            f"batch 256 texts/s, {count} thread(s)",
            f"vs {BASE}, {count} thread(s)",
            f"one text p50 ms, {count} thread(s)",
        ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, row in rows.items():
        cells = [
            name,
            f"{100 * row['accuracy']:.2f}%",
            f"{row['vs_fp32']:.2e}",
            f"{row['moved']:.2e}",
            f"{row['bytes'] / (1 << 20):.2f}",
        ]
        for count in threads:
            entry = summaries[count]["engines"][name]
            per_s, ratio, p50 = (
                entry["figures"]["texts_per_s_256"],
                entry["ratios"]["throughput_ratio"],
                entry["figures"]["latency_p50_ms"],
            )
            cells += [
                f"{per_s['median']:,.0f} ({per_s['min']:,.0f}-{per_s['max']:,.0f})",
                f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})",
                f"{p50['median']:.3f} ({p50['min']:.3f}-{p50['max']:.3f})",
            ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

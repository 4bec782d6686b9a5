"""Texts/s of `rnnonnx predict --input big.csv --output preds.csv`, with and without bucketing.

Builds a CSV of mixed-length texts (each 1 to 10 built-in sentences, seeded), runs the real
command on it in a fresh process each way, and reports end-to-end texts/s (process start and
model load included), the peak RSS of each process, the peak RSS on a file a tenth the size
(memory should not grow with the file), the share of padding each batching computes on, and
whether both ways gave the same predictions.

    python benchmarks/batch_speed.py BUNDLE [--rows 100000] [--threads N] [--repeats 2] [--graph G] [--int8] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path

from rnnonnx.batch import CHUNK_ROWS
from rnnonnx.benchmark import rnnonnx_command, run_measured
from rnnonnx.data import read_builtin
from rnnonnx.machine import machine, usable_cores
from rnnonnx.predictor import Predictor

BATCH = 256


def write_texts(path: Path, rows: int, seed: int) -> None:
    """``id,text`` rows, each text 1 to 10 built-in sentences joined by spaces."""
    sentences = read_builtin().texts
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 10)))])


def padding_share(lengths: list[int], keys: list[int], bucketing: bool) -> float:
    """Fraction of the token positions in padded batches that are padding, batching as
    ``predict --output`` does: chunks of ``CHUNK_ROWS``, sorted by ``keys`` when bucketing
    (token counts for the ids graph, characters for the text-in graph)."""
    computed = real = 0
    for start in range(0, len(lengths), CHUNK_ROWS):
        chunk = list(zip(keys[start : start + CHUNK_ROWS], lengths[start : start + CHUNK_ROWS]))
        if bucketing:
            chunk.sort(key=lambda pair: pair[0])
        for b in range(0, len(chunk), BATCH):
            batch = [max(1, n) for _, n in chunk[b : b + BATCH]]
            computed += max(batch) * len(batch)
            real += sum(batch)
    return 1 - real / computed


def timed_predict(bundle: Path, source: Path, target: Path, options: list[str], bucketing: bool) -> dict:
    command = [
        *rnnonnx_command(),
        "predict",
        str(bundle),
        "--device",
        "cpu",
        *options,
        "--input",
        str(source),
        "--output",
        str(target),
        "--quiet",
    ]
    if not bucketing:
        command.append("--no-bucketing")
    wall, peak = run_measured(command)
    return {"wall_s": wall, "peak_rss_mib": peak}


def same_predictions(a: Path, b: Path) -> bool:
    """Both outputs name the same label for every row, with scores within 1e-5."""
    with open(a, encoding="utf-8", newline="") as fa, open(b, encoding="utf-8", newline="") as fb:
        for x, y in zip(csv.DictReader(fa), csv.DictReader(fb), strict=True):
            if x["id"] != y["id"] or x["label"] != y["label"] or abs(float(x["score"]) - float(y["score"])) > 1e-5:
                return False
    return True


def measure(bundle: Path, rows: int, threads: int, seed: int, repeats: int, graph: str = "auto", int8: bool = False) -> dict:
    predictor = Predictor(bundle, device="cpu", threads=1, graph=graph, precision="int8" if int8 else "fp32")
    options = ["--threads", str(threads), "--graph", graph, *(["--int8"] if int8 else [])]
    with tempfile.TemporaryDirectory(prefix="rnnonnx-batch-") as tmp:
        big, small = Path(tmp) / "big.csv", Path(tmp) / "small.csv"
        write_texts(big, rows, seed)
        write_texts(small, max(1, rows // 10), seed)
        with open(big, encoding="utf-8", newline="") as handle:
            texts = [row["text"] for row in csv.DictReader(handle)]
        lengths = [len(predictor.tokenizer.encode(text)) for text in texts]
        keys = [len(text) for text in texts] if predictor.graph == "text" else lengths
        del texts
        runs: dict[str, dict] = {}
        for attempt in range(repeats):
            for name, bucketing in (("bucketing", True), ("no bucketing", False)):
                print(f"batch_speed: {rows:,} rows, {name}, run {attempt + 1}/{repeats}", file=sys.stderr)
                result = timed_predict(bundle, big, Path(tmp) / f"{name}.csv", options, bucketing)
                if name not in runs or result["wall_s"] < runs[name]["wall_s"]:
                    runs[name] = result
        for name, result in runs.items():
            result["texts_per_s"] = rows / result["wall_s"]
            result["padding_share"] = padding_share(lengths, keys, name == "bucketing")
        small_run = timed_predict(bundle, small, Path(tmp) / "small-out.csv", options, True)
        same = same_predictions(Path(tmp) / "bucketing.csv", Path(tmp) / "no bucketing.csv")
    return {
        "machine": machine(),
        "bundle": str(bundle),
        "rows": rows,
        "mean_tokens": sum(lengths) / len(lengths),
        "max_tokens": max(lengths),
        "threads": threads,
        "model": f"{predictor.model_file} ({predictor.graph} graph)",
        "predict_options": options,
        "repeats": repeats,
        "runs": runs,
        "speedup": runs["bucketing"]["texts_per_s"] / runs["no bucketing"]["texts_per_s"],
        "small_file": {"rows": max(1, rows // 10), **small_run},
        "same_predictions": same,
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"`rnnonnx predict --input big.csv --output preds.csv` on {report['rows']:,} mixed-length texts "
        f"(1 to 10 sentences each, mean {report['mean_tokens']:.1f} tokens after truncation, max {report['max_tokens']}); "
        f"{report['model']}, `{' '.join(report['predict_options'])}`; CPU {m['cpu']}, "
        f"load average {m.get('load_average_1min', '?')}; end to end, process start included.",
        "",
        "| batching | texts/s | wall s | padding share | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in report["runs"].items():
        lines.append(
            f"| {name} | {r['texts_per_s']:,.0f} | {r['wall_s']:.1f} | {r['padding_share']:.0%} | {r['peak_rss_mib']:.0f} |"
        )
    s = report["small_file"]
    bounded = report["runs"]["bucketing"]["peak_rss_mib"] <= 1.25 * s["peak_rss_mib"] + 10
    lines += [
        "",
        f"Bucketing speed-up: {report['speedup']:.2f}x; same predictions both ways: "
        f"{'yes' if report['same_predictions'] else 'NO'}. "
        f"Peak RSS on {s['rows']:,} rows: {s['peak_rss_mib']:.0f} MiB "
        f"({'memory does not grow with the file' if bounded else 'memory GREW with the file'}). "
        f"Fastest of {report['repeats']} interleaved run(s) each.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way, interleaved; the fastest counts")
    parser.add_argument("--graph", choices=("auto", "ids", "text"), default="auto", help="passed to rnnonnx predict")
    parser.add_argument("--int8", action="store_true", help="run the bundle's int8 model")
    parser.add_argument("--json", action="store_true", help="the full report as JSON instead of Markdown")
    args = parser.parse_args()
    report = measure(args.bundle, args.rows, args.threads, args.seed, args.repeats, args.graph, args.int8)
    print(json.dumps(report, indent=1) if args.json else markdown(report))
    return 0 if report["same_predictions"] else 1


if __name__ == "__main__":
    sys.exit(main())

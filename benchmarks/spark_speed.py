"""Rows/s of `rnnonnx.spark.predict_udf` on a local Spark against `rnnonnx predict --input --output`.

Writes one CSV of mixed-length texts (each 1 to 10 built-in sentences, seeded), then times, in
interleaved rounds on the same file and machine:

* `rnnonnx predict BUNDLE --input in.csv --output out.csv` in a fresh process (process start and
  model load included; its own rows/s, which leaves them out, is reported too);
* a Spark job on `local[CORES]` that reads the same CSV, adds `predict_udf(BUNDLE)("text")` and
  writes `id,text,label,score` as CSV, in a session that is already running (the session start
  and the first job, which starts the Python workers and loads the bundle, are reported apart).

Both sides use every core: the CLI with ONNX Runtime's threads, Spark with one task per core and
one ORT thread per task. It checks that both outputs give every row the same label and score.

    python benchmarks/spark_speed.py BUNDLE [--rows 100000] [--rounds 3] [--cores 2] [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnonnx.benchmark import machine, rnnonnx_command
from rnnonnx.data import read_builtin


def write_texts(path: Path, rows: int, seed: int) -> None:
    """``id,text`` rows, each text 1 to 10 built-in sentences joined by spaces."""
    sentences = read_builtin().texts
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 10)))])


def cli_command(bundle: Path, source: Path, target: Path) -> list[str]:
    return [*rnnonnx_command(), "predict", str(bundle), "--device", "cpu", "--input", str(source), "--output", str(target)]


def run_cli(bundle: Path, source: Path, target: Path) -> dict:
    """Wall seconds of one ``rnnonnx predict --output`` process, and the rows/s it reports itself."""
    started = time.perf_counter()
    done = subprocess.run(cli_command(bundle, source, target), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"rnnonnx predict failed: {done.stderr.strip().splitlines()[-1:]}")
    found = re.search(r"\(([\d,]+) rows/s\)", done.stderr)
    return {"wall_s": wall, "inner_rows_per_s": float(found.group(1).replace(",", "")) if found else None}


def spark_job(spark, udf, source: Path, target: Path) -> float:
    """Wall seconds of read CSV -> predict -> write CSV."""
    started = time.perf_counter()
    df = spark.read.option("header", True).option("escape", '"').schema("id long, text string").csv(str(source))
    (
        df.withColumn("pred", udf("text"))
        .select("id", "text", "pred.label", "pred.score")
        .write.mode("overwrite")
        .option("header", True)
        .option("escape", '"')
        .csv(str(target))
    )
    return time.perf_counter() - started


def read_predictions(paths: list[str]) -> dict[str, tuple[str, float]]:
    out = {}
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, escapechar=None):
                out[row["id"]] = (row["label"], float(row["score"]))
    return out


def same_predictions(cli_out: Path, spark_dir: Path) -> tuple[bool, float]:
    """Whether every row got the same label from both, and the largest score difference."""
    a = read_predictions([str(cli_out)])
    b = read_predictions(sorted(glob.glob(str(spark_dir / "part-*.csv"))))
    if a.keys() != b.keys():
        return False, float("inf")
    labels_equal = all(a[k][0] == b[k][0] for k in a)
    return labels_equal, max(abs(a[k][1] - b[k][1]) for k in a)


def measure(bundle: Path, rows: int, rounds: int, cores: int, seed: int) -> dict:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    import rnnonnx.spark

    with tempfile.TemporaryDirectory(prefix="rnnonnx-spark-speed-") as tmp:
        source = Path(tmp) / "in.csv"
        write_texts(source, rows, seed)
        started = time.perf_counter()
        spark = (
            SparkSession.builder.master(f"local[{cores}]")
            .appName("rnnonnx-spark-speed")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        session_s = time.perf_counter() - started
        udf = rnnonnx.spark.predict_udf(str(bundle))
        first_s = spark_job(spark, udf, source, Path(tmp) / "spark-first")
        partitions = spark.read.option("header", True).csv(str(source)).rdd.getNumPartitions()
        cli, spark_runs = [], []
        for r in range(rounds):
            order = ("cli", "spark") if r % 2 == 0 else ("spark", "cli")
            for side in order:
                print(f"spark_speed: {rows:,} rows, round {r + 1}/{rounds}, {side}", file=sys.stderr)
                if side == "cli":
                    cli.append(run_cli(bundle, source, Path(tmp) / "cli.csv"))
                else:
                    spark_runs.append(spark_job(spark, udf, source, Path(tmp) / "spark"))
        same, max_diff = same_predictions(Path(tmp) / "cli.csv", Path(tmp) / "spark")
        spark.stop()
    cli_rps = [rows / c["wall_s"] for c in cli]
    spark_rps = [rows / s for s in spark_runs]
    ratios = [s / c for s, c in zip(spark_rps, cli_rps)]
    return {
        "machine": machine(),
        "bundle": str(bundle),
        "rows": rows,
        "rounds": rounds,
        "cores": cores,
        "input_partitions": partitions,
        "cli_command": "rnnonnx predict BUNDLE --device cpu --input in.csv --output out.csv",
        "cli_rows_per_s": cli_rps,
        "cli_inner_rows_per_s": [c["inner_rows_per_s"] for c in cli],
        "spark_rows_per_s": spark_rps,
        "spark_over_cli": ratios,
        "spark_session_start_s": session_s,
        "spark_first_job_s": first_s,
        "same_labels": same,
        "max_score_difference": max_diff,
    }


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def markdown(report: dict) -> str:
    m = report["machine"]
    inner = [v for v in report["cli_inner_rows_per_s"] if v]
    lines = [
        f"{report['rows']:,} mixed-length texts (1 to 10 built-in sentences each) in one CSV, bundle `{report['bundle']}`; "
        f"CPU {m['cpu']}, {m['usable_cores']} usable cores, load average {m.get('load_average_1min', '?')} at the end; "
        f"median of {report['rounds']} interleaved rounds (min to max).",
        "",
        "| path | rows/s |",
        "|---|---:|",
        f"| `{report['cli_command']}` (fresh process, start and model load included) | {spread(report['cli_rows_per_s'])} |",
    ]
    if inner:
        lines.append(f"| the same, rows/s it reports itself (start and model load left out) | {spread(inner)} |")
    lines += [
        f'| Spark `local[{report["cores"]}]`: read CSV, `predict_udf(BUNDLE)("text")`, write CSV '
        f"(running SparkSession, {report['input_partitions']} input partitions) | {spread(report['spark_rows_per_s'])} |",
        "",
        f"Spark / CLI rows/s, per round: {spread(report['spark_over_cli'], '{:.2f}')}. "
        f"SparkSession start {report['spark_session_start_s']:.1f} s; first job (Python workers start, bundle loads) "
        f"{report['spark_first_job_s']:.1f} s against {report['rows'] / statistics.median(report['spark_rows_per_s']):.1f} s "
        f"for the later ones (median). Same label for every row: {'yes' if report['same_labels'] else 'NO'}; "
        f"largest score difference {report['max_score_difference']:.1e} (the CSVs round scores).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N]; the CLI uses all cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="Print a Markdown table instead of JSON.")
    args = parser.parse_args()
    report = measure(args.bundle, args.rows, args.rounds, args.cores, args.seed)
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))
    return 0 if report["same_labels"] else 1


if __name__ == "__main__":
    sys.exit(main())

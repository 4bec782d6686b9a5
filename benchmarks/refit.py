"""What ``--refit`` (train again on training + validation rows for the epochs early stopping chose)
gains on test accuracy, and what it costs in training time.

For each data set: ``rnnonnx train --baseline --no-refit`` and ``rnnonnx train --baseline --refit``
with otherwise default options (``--analyzer char`` for Japanese), interleaved, on the same split
and seed. Both runs choose their epochs on the same validation rows; each recipe's test split is
scored once, by the run itself. The baseline (TF-IDF + logistic regression) is refitted the same
way in the ``--refit`` run.

    python benchmarks/make_datasets.py --out /tmp/rnnonnx-data
    python benchmarks/refit.py --data /tmp/rnnonnx-data --out /tmp/refit --only man-de kernel-docs builtin
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETS = {"builtin": "word", "debian-en": "word", "debian-ja": "char", "kernel-docs": "word", "man-de": "word"}


def train(name: str, data_dir: Path, out: Path, refit: bool) -> dict:
    """One ``rnnonnx train`` run; its metrics.json, plus the wall time of the command."""
    command = [sys.executable, "-m", "rnnonnx.cli", "train", "--baseline", "--quiet", "--out", str(out)]
    command += ["--refit" if refit else "--no-refit", "--analyzer", SETS[name]]
    if name != "builtin":
        command += ["--data", str(data_dir / f"{name}.csv")]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["wall_seconds"] = round(time.perf_counter() - started, 1)
    metrics["command"] = " ".join(["rnnonnx", *command[3:]]).replace(str(out), "RUN")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of make_datasets.py's CSV files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and results.json")
    parser.add_argument("--only", nargs="+", choices=sorted(SETS), default=list(SETS))
    args = parser.parse_args()
    results = {}
    results_path = args.out / "results.json"
    if results_path.is_file():
        results = json.loads(results_path.read_text())
    for name in args.only:
        for refit in (False, True):
            key = f"{name}/{'refit' if refit else 'no-refit'}"
            if key in results:
                continue
            results[key] = train(name, args.data, args.out / name / key.split("/")[1], refit)
            args.out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1))
            print(f"{key}: test {results[key]['test_accuracy']:.4f} in {results[key]['wall_seconds']}s", flush=True)
    print(table(results, os.cpu_count() or 1))


def table(results: dict, cores: int) -> str:
    """The markdown table of benchmarks/autotune.md."""
    lines = [
        "| data | RNN test acc, no refit | RNN test acc, refit | TF-IDF+LR no refit | TF-IDF+LR refit "
        "| train s, no refit | train s, refit (of which refit) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = sorted({key.split("/")[0] for key in results})
    for name in names:
        plain, refit = results.get(f"{name}/no-refit"), results.get(f"{name}/refit")
        if not plain or not refit:
            continue
        lines.append(
            f"| {name} | {100 * plain['test_accuracy']:.1f} | {100 * refit['test_accuracy']:.1f} "
            f"| {100 * plain['baseline']['test_accuracy']:.1f} | {100 * refit['baseline']['test_accuracy']:.1f} "
            f"| {plain['train_seconds']:.0f} | {refit['train_seconds']:.0f} ({refit['refit']['seconds']:.0f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

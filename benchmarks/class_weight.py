"""What --class-weight balanced does on an imbalanced set: macro-F1 and minority recall.

Builds an imbalanced copy of the built-in sentences (every ``neg`` row, one ``pos`` row in
``--ratio``; 10:1 by default), trains the same recipe with and without ``--class-weight
balanced`` from each seed, exports each run and scores its bundle on the run's own test rows
with ``rnnonnx evaluate`` (ONNX Runtime). Prints a Markdown table; ``--out FILE`` also writes it.

    python benchmarks/class_weight.py --seeds 0,1,2 --members 1 --weightings 'none;balanced;pos=3'

The same with the command line, for one seed (the data file is written to --work):

    rnnonnx train --data /tmp/rnnonnx-class-weight/imbalanced.csv --members 1 --class-weight balanced --out runs/cw
    rnnonnx export runs/cw && rnnonnx evaluate runs/cw

Runs are kept in --work and reused when the script is run again; remove --work to retrain.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnonnx.machine import cpu_name  # noqa: E402  (the checkout's package, found through ROOT)

WEIGHTINGS = "none;balanced"


def write_imbalanced(path: Path, ratio: int) -> tuple[int, int]:
    """Every ``neg`` built-in row and every ``ratio``-th ``pos`` row, as CSV; returns the counts."""
    from rnnonnx.data import read_builtin

    data = read_builtin()
    rows, seen = [], 0
    for text, label in zip(data.texts, data.labels):
        if label == "pos":
            seen += 1
            if seen % ratio:
                continue
        rows.append((text, label))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return sum(1 for _, y in rows if y == "neg"), sum(1 for _, y in rows if y == "pos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--ratio", type=int, default=10, help="neg rows per pos row")
    parser.add_argument("--monitor", default="val_accuracy", help="early stopping's metric, as 'rnnonnx train --monitor'")
    parser.add_argument(
        "--weightings",
        default=WEIGHTINGS,
        help="--class-weight values to compare, separated by ';' ('none': no weights), e.g. 'none;balanced;pos=3'",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/rnnonnx-class-weight"))
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    args = parser.parse_args()
    import os

    from rnnonnx import api  # not rnnonnx.export: once the export module is loaded, that name is the module

    data = args.work / "imbalanced.csv"
    neg, pos = write_imbalanced(data, args.ratio)
    seeds = [int(s) for s in args.seeds.split(",")]
    weightings = [None if w.strip() == "none" else w.strip() for w in args.weightings.split(";")]
    results: dict[str | None, list[dict]] = {w: [] for w in weightings}
    for seed in seeds:
        for weighting in weightings:
            run = args.work / f"{(weighting or 'none').replace('=', '')}-{args.monitor}-s{seed}"
            started = time.perf_counter()
            if not (run / "metrics.json").is_file():  # kept from an interrupted run of this script
                api.train(run, data, members=args.members, seed=seed, class_weight=weighting, monitor=args.monitor)
            if not (run / "bundle" / "manifest.json").is_file():
                api.export(run, log=lambda message: None)
            report = api.evaluate(run, device="cpu").to_dict()
            row = {
                "seed": seed,
                "accuracy": report["accuracy"],
                "macro_f1": report["macro_f1"],
                "pos_recall": report["per_class"]["pos"]["recall"],
                "pos_f1": report["per_class"]["pos"]["f1"],
                "test_rows": report["evaluated"],
                "seconds": time.perf_counter() - started,
            }
            results[weighting].append(row)
            print(
                f"{weighting or 'none':>8} seed {seed}: macro-F1 {row['macro_f1']:.4f}, accuracy {row['accuracy']:.4f}, "
                f"pos recall {row['pos_recall']:.4f} ({row['seconds']:.0f} s)",
                flush=True,
            )
    lines = [
        f"Imbalanced built-in sentences: {neg} neg, {pos} pos ({args.ratio}:1); default recipe with --members {args.members} "
        f"--monitor {args.monitor}, "
        f"scored by `rnnonnx evaluate` on each run's own test rows ({results[None][0]['test_rows']} rows).",
        "",
        "| --class-weight | seed | macro-F1 | accuracy | pos recall | pos F1 |",
        "|---|---|---|---|---|---|",
    ]
    for weighting in weightings:
        for row in results[weighting]:
            lines.append(
                f"| {weighting or '(none)'} | {row['seed']} | {row['macro_f1']:.4f} | {row['accuracy']:.4f} | "
                f"{row['pos_recall']:.4f} | {row['pos_f1']:.4f} |"
            )
    for weighting in weightings:
        rows = results[weighting]
        lines.append(
            f"| {weighting or '(none)'} | mean | {statistics.mean(r['macro_f1'] for r in rows):.4f} | "
            f"{statistics.mean(r['accuracy'] for r in rows):.4f} | {statistics.mean(r['pos_recall'] for r in rows):.4f} | "
            f"{statistics.mean(r['pos_f1'] for r in rows):.4f} |"
        )
    lines += [
        "",
        f"Hardware: {cpu_name()}, {os.cpu_count()} cores. Command: "
        f"`python benchmarks/class_weight.py --seeds {args.seeds} --members {args.members} --ratio {args.ratio} "
        f"--monitor {args.monitor} "
        f"--weightings '{args.weightings}'`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from rnnonnx.files import atomic_file

        with atomic_file(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()

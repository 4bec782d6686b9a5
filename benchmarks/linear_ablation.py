"""The linear member's contribution, set by set, from the runs ``benchmarks/suite.py`` trained.

Every run with a linear member records, on its validation rows, the accuracy of the blend at each
share tried (share 0 is the recurrent members alone), the member's own accuracy and the share
kept (``metrics.json``'s ``linear``). This prints them as one markdown table, with the test
accuracy of the shipped bundle from the suite's JSON; nothing is retrained.

    python benchmarks/linear_ablation.py --out /tmp/rnnonnx-suite --report benchmarks/SUITE.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(out: Path, report: dict) -> list[str]:
    """One markdown row per set with an rnnonnx run that has a ``linear`` record."""
    lines = []
    for folder in sorted((out / "models").iterdir()):
        metrics_file = folder / "rnnonnx" / "run" / "metrics.json"
        if not metrics_file.exists():
            continue
        linear = json.loads(metrics_file.read_text()).get("linear")
        if linear is None:
            continue
        tried = linear["val_accuracy_by_weight"]  # empty when --linear-weight was given
        test = report.get("runs", {}).get(f"{folder.name}/rnnonnx", {}).get("test_accuracy")
        cells = [
            folder.name,
            f"{100 * tried['0']:.1f}" if tried else "",
            f"{100 * linear['member_val_accuracy']:.1f}",
            f"{100 * max(tried.values()):.1f}" if tried else "",
            f"{linear['weight']:g}",
            str(linear["max_len"]),
            "" if test is None else f"{test:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-suite"), help="the suite's --out folder")
    parser.add_argument("--report", type=Path, default=Path(__file__).with_name("SUITE.json"), help="the suite's JSON")
    args = parser.parse_args()
    report = json.loads(args.report.read_text()) if args.report.exists() else {}
    print(
        "| set | val acc, recurrent members alone (share 0) | val acc, linear member alone | val acc, blend at the "
        "kept share | kept share | tokens the linear member reads | test acc of the bundle |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows(args.out, report)))


if __name__ == "__main__":
    main()

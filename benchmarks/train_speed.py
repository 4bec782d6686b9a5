"""Time ``rnnonnx train`` and ``rnnonnx export`` end to end on 30,000 short texts.

The texts: the one-line synopses of Debian bookworm's binary packages (``Description:`` of the
``Packages`` index, e.g. "Perl script indenter and reformatter"), labelled by their section with
the section prefix (``contrib/``, ``non-free/``) dropped, sections with fewer than 500 packages left
out, 30,000 rows drawn at random (seed 0). Build the index with ``apt-get update`` (any Debian
bookworm system: ``/var/lib/apt/lists``) or point ``--lists`` at a copy.

    python benchmarks/train_speed.py --out /tmp/speed            # build the set, train, export
    python benchmarks/train_speed.py --out /tmp/speed --set members=3 --quantize int8

Each step runs as the CLI would, in a fresh process (``time`` of the whole command, import
included); the figures are printed with the CPU model, the cores and the load average.
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROWS = 30_000
MIN_SECTION = 500


def synopses(lists: Path) -> list[tuple[str, str]]:
    """(synopsis, section) of every package in the ``*_main_binary-amd64_Packages*`` files of ``lists``."""
    rows = []
    for path in sorted(lists.glob("*bookworm_main_binary-amd64_Packages*")):
        raw = (
            subprocess.run(["lz4cat", str(path)], capture_output=True, check=True).stdout
            if path.suffix == ".lz4"
            else path.read_bytes()
        )
        for stanza in raw.decode("utf-8", "replace").split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
            if "Description" in fields and "Section" in fields:
                rows.append((fields["Description"].strip(), fields["Section"].rsplit("/", 1)[-1]))
    return rows


def synopsis_rows(lists: Path) -> list[tuple[str, str]]:
    """The 30,000 (synopsis, section) rows (see the module docstring)."""
    rows = list(dict.fromkeys(synopses(lists)))  # one row per distinct (synopsis, section)
    counts = collections.Counter(section for _, section in rows)
    rows = [r for r in rows if counts[r[1]] >= MIN_SECTION]
    random.Random(0).shuffle(rows)
    if len(rows) < ROWS:
        raise SystemExit(f"only {len(rows)} rows in sections of {MIN_SECTION}+ packages under {lists}")
    return rows[:ROWS]


def build(lists: Path, out: Path) -> Path:
    """The 30,000-row CSV (see the module docstring)."""
    path = out / "debian-synopses.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(synopsis_rows(lists))
    return path


def timed(command: list[str]) -> float:
    """Wall seconds of one CLI command (its output shown)."""
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=Path, default=Path("/var/lib/apt/lists"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-speed"))
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="extra train option, e.g. members=3")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "debian-synopses.csv"
    if not data.exists():
        data = build(args.lists, args.out)
    extra = [part for item in args.set for part in (f"--{item.split('=', 1)[0].replace('_', '-')}", item.split("=", 1)[1])]
    cli = [sys.executable, "-m", "rnnonnx.cli"]
    train = timed([*cli, "train", "--data", str(data), "--out", str(args.out / "run"), "--quiet", *extra])
    export = timed(
        [*cli, "export", str(args.out / "run"), "--out", str(args.out / "bundle")]
        + (["--quantize", args.quantize] if args.quantize else [])
    )
    print(
        f"train {train:.1f} s + export {export:.1f} s = {train + export:.1f} s on {ROWS} texts; "
        f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} {args.set or ''}"
    )


if __name__ == "__main__":
    main()

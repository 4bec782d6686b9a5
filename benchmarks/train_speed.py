"""Time ``rnnonnx train`` and ``rnnonnx export`` end to end on 30,000 short texts.

The texts (``--texts synopses``, the default): the one-line synopses of Debian bookworm's binary packages (``Description:`` of the
``Packages`` index, e.g. "Perl script indenter and reformatter"), labelled by their section with
the section prefix (``contrib/``, ``non-free/``) dropped, sections with fewer than 500 packages left
out, 30,000 rows drawn at random (seed 0). Build the index with ``apt-get update`` (any Debian
bookworm system: ``/var/lib/apt/lists``) or point ``--lists`` at a copy.

    python benchmarks/train_speed.py --out /tmp/speed            # build the set, train, export
    python benchmarks/train_speed.py --out /tmp/speed --set members=3 --quantize int8
    python benchmarks/train_speed.py --out /tmp/speed-fortunes --texts fortunes
    python benchmarks/train_speed.py --out /tmp/speed-fortunes --texts fortunes --one-command

``--texts fortunes``: texts of tweet length instead (median 16-17 tokens, a long tail of poems and
dialogues): the fortune cookies of Debian's English and German fortune packages (``fortunes``,
``fortunes-min``, ``fortunes-de``, as ``make_suite_data.py`` reads them, with no cap per class),
labelled by language and file (``en/computers``, ``de/witze``, ...; the 58 files of 50 or more cookies), 30,000 drawn at
random (seed 0). The packages are fetched with apt into ``OUT/apt``.

Each step runs as the CLI would, in a fresh process (``time`` of the whole command, import
included); the figures are printed with the CPU model, the cores and the load average, after
numpy's fp32 matrix product timed on one thread and on every core just before (the cores' speed on
a shared machine moves with its other tenants).
``--one-command``: one process, ``rnnonnx train ... --export BUNDLE``, instead of ``train`` then ``export``.
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


def fortune_rows(state: Path) -> list[tuple[str, str]]:
    """30,000 (cookie, language/file) rows (see the module docstring)."""
    from make_suite_data import curated, fortunes  # make_suite_data imports this module: import when used

    rows = [
        (text, f"{name.rsplit('-', 1)[1]}/{label}")
        for name in ("fortunes-en", "fortunes-de")
        for text, label in curated(fortunes(state, name), per_class=0, min_class=50, seed=0)
    ]
    random.Random(0).shuffle(rows)
    if len(rows) < ROWS:
        raise SystemExit(f"only {len(rows)} fortunes")
    return rows[:ROWS]


def build(texts: str, lists: Path, out: Path) -> Path:
    """The 30,000-row CSV of ``texts`` (see the module docstring)."""
    path = out / f"{texts}.csv"
    rows = synopsis_rows(lists) if texts == "synopses" else fortune_rows(out / "apt")
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def timed(command: list[str]) -> float:
    """Wall seconds of one CLI command (its output shown)."""
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def machine(options: list[str]) -> str:
    """The CPU, its cores and the load average now, with the extra train options."""
    from rnnonnx.machine import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} {options or ''}"


def gemm_reference(threads: int, seconds: float = 2.0) -> float:
    """GFLOP/s of numpy's fp32 matrix product on ``threads`` threads, in a fresh process: what the
    cores gave just before a timed command, so that runs on shared or other machines can be compared."""
    from rnnonnx.benchmark import thread_env

    code = f"from rnnonnx.benchmark_worker import gemm_peak; print(gemm_peak({seconds})['gflops'])"
    return float(
        subprocess.run([sys.executable, "-c", code], env=thread_env(threads), capture_output=True, text=True, check=True).stdout
    )


def reference() -> str:
    """The fp32 matrix product's GFLOP/s on one thread and on every core, in words."""
    figures = [f"{gemm_reference(threads):.1f} GFLOP/s on {threads}" for threads in sorted({1, os.cpu_count() or 1})]
    return "fp32 matrix product (numpy, 1024 x 1024) just before: " + ", ".join(figures) + " thread(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=Path, default=Path("/var/lib/apt/lists"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-speed"))
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="extra train option, e.g. members=3")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--texts", choices=["synopses", "fortunes"], default="synopses")
    parser.add_argument("--one-command", action="store_true", help="train --export in one process (no --quantize)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / f"{args.texts}.csv"
    if not data.exists():
        data = build(args.texts, args.lists, args.out)
    extra = [part for item in args.set for part in (f"--{item.split('=', 1)[0].replace('_', '-')}", item.split("=", 1)[1])]
    cli = [sys.executable, "-m", "rnnonnx.cli"]
    train = [*cli, "train", "--data", str(data), "--out", str(args.out / "run"), "--quiet", *extra]
    print(reference(), flush=True)
    if args.one_command:
        if args.quantize:
            parser.error("--one-command exports with export's defaults: leave out --quantize")
        both = timed([*train, "--export", str(args.out / "bundle")])
        print(f"train --export {both:.1f} s (one command) on {ROWS} {args.texts}; {machine(args.set)}")
        return
    trained = timed(train)
    exported = timed(
        [*cli, "export", str(args.out / "run"), "--out", str(args.out / "bundle")]
        + (["--quantize", args.quantize] if args.quantize else [])
    )
    total = trained + exported
    print(f"train {trained:.1f} s + export {exported:.1f} s = {total:.1f} s on {ROWS} {args.texts}; {machine(args.set)}")


if __name__ == "__main__":
    main()

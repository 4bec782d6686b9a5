"""How many texts should one model call hold? The Python API's throughput on a whole file at each
``batch_size`` (the most texts ``Predictor`` puts in one ONNX Runtime call), fp32 and int8.

ONNX Runtime's recurrent kernels first compute every step's input products for the whole call,
then walk the steps: a call of B texts of T tokens keeps T x B x 4H gate values in flight, likely
outgrowing the CPU's caches as B grows, while every call also has a fixed cost. This script measures
what the two add up to: each (precision, batch_size) opens its own predictor, all of them take turns in every round
(the order reversed every other round), and each figure is reported relative to fp32 at the CPU's
default call size (``CPU_CALL_SIZE``) within the same round, median and range over rounds.

    python benchmarks/call_size.py BUNDLE TEST.csv [--batch-size 16 --batch-size 64 ...] [--threads 1]
        [--rounds 5] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import read_rows  # noqa: E402  (benchmarks/ is a folder of scripts)

PRECISIONS = ("fp32", "int8")
SIZES = (8, 16, 32, 64, 128, 256)


def texts_per_second(predict: Callable[[list[str]], object], texts: list[str], seconds: float) -> float:
    """Whole-file calls of ``predict`` for about ``seconds`` (at least one)."""
    calls, started = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - started < seconds:
        predict(texts)
        calls += 1
    return calls * len(texts) / (time.perf_counter() - started)


def rounds_of(
    engines: dict[tuple[str, int], Callable[[list[str]], object]],
    texts: list[str],
    base: tuple[str, int],
    rounds: int,
    seconds: float,
    measure: Callable[..., float] = texts_per_second,
) -> dict[tuple[str, int], list[float]]:
    """Each engine's texts/s over ``base``'s in the same round, one list entry per round."""
    keys = list(engines)
    found: dict[tuple[str, int], list[float]] = {k: [] for k in keys}
    for round_ in range(rounds):
        speeds = {k: measure(engines[k], texts, seconds) for k in (keys if round_ % 2 == 0 else keys[::-1])}
        for k in keys:
            found[k].append(speeds[k] / speeds[base])
    return found


def main(argv: Sequence[str] | None = None) -> None:
    import rnnonnx
    from rnnonnx.benchmark import spread
    from rnnonnx.machine import machine
    from rnnonnx.predictor import CPU_CALL_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("test", type=Path, help="CSV with a text column (the suite's test.csv)")
    parser.add_argument("--batch-size", type=int, action="append", help=f"repeatable (default {', '.join(map(str, SIZES))})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement, at least one call")
    args = parser.parse_args(argv)
    default = CPU_CALL_SIZE
    sizes = sorted(set(args.batch_size or SIZES) | {default})
    if min(sizes) < 1 or args.threads < 1 or args.rounds < 1:
        parser.error("--batch-size, --threads and --rounds must be at least 1")
    texts, _ = read_rows(args.test)
    engines = {}
    for precision in PRECISIONS:
        for size in sizes:
            predictor = rnnonnx.load(args.bundle, precision=precision, threads=args.threads, batch_size=size)
            predictor.predict_proba(texts)  # warm up
            engines[(precision, size)] = predictor.predict_proba
    found = rounds_of(engines, texts, ("fp32", default), args.rounds, args.seconds)
    print(
        f"{args.test.parent.name} ({len(texts):,} texts), {args.threads} thread(s), CPU {machine()['cpu']}: texts/s over "
        f"fp32 at batch_size {default}, median (min-max) of {args.rounds} rounds\n"
    )
    print("| batch_size | " + " | ".join(PRECISIONS) + " |")
    print("|---:|" + "---:|" * len(PRECISIONS))
    for size in sizes:
        cells = [spread(found[(p, size)]) for p in PRECISIONS]
        print(f"| {size} | " + " | ".join(f"{c['median']:.2f}x ({c['min']:.2f}-{c['max']:.2f})" for c in cells) + " |")


if __name__ == "__main__":
    main()

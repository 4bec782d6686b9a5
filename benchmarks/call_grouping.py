"""Which texts should share a model call? The text-in graph's throughput when the predictor groups
texts by characters, by its estimate of their tokens (what it does, ``TokenizerSpec.estimated_steps``:
words for the ``word`` analyzer, characters but spaces for ``char``) or by exact token counts
(tokenized in Python first), with the padding each grouping leaves.

ONNX Runtime's recurrent kernels compute every row of a call up to the call's longest text, so
padding is work, and the text-in graph tokenizes inside ONNX Runtime: the predictor must group
texts before it knows their tokens. Texts come in chunks of ``--chunk`` (``rnnonnx bench``'s
batches hold 256; 0 is the whole file in one ``predict``), each chunk is grouped by the key (the
key's own cost is timed too) and split into calls as the predictor splits them (``text_batches``,
``CPU_CALL_SIZE``), and the calls run on one single-threaded session per precision. Every grouping
takes its turn in every round (the order reversed every other round); speeds are relative to
grouping by characters in the same round, median and range over rounds.

    python benchmarks/call_grouping.py BUNDLE TEST.csv [--chunk 256] [--precision fp32 --precision int8]
        [--rounds 7] [--seconds 1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from call_size import rounds_of  # noqa: E402  (benchmarks/ is a folder of scripts)
from suite import read_rows  # noqa: E402

from rnnonnx.text import TokenizerSpec  # noqa: E402

Key = Callable[[TokenizerSpec, str], int]


def tokens(spec: TokenizerSpec, text: str) -> int:
    """The recurrent steps a text takes: its tokens, from 1 to ``max_len``."""
    return min(max(1, len(spec.tokens(text))), spec.max_len)


KEYS: dict[str, Key] = {
    "characters": lambda spec, text: len(text),
    "estimated tokens (the predictor)": lambda spec, text: spec.estimated_steps(text),
    "tokens (tokenized in Python)": tokens,
}
BASE = "characters"


def chunks(texts: Sequence[str], chunk: int) -> list[Sequence[str]]:
    size = chunk or max(1, len(texts))
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def calls(texts: Sequence[str], spec: TokenizerSpec, key: Key) -> list[list[int]]:
    """The model calls of one ``predict`` of ``texts`` grouped by ``key``, split as the predictor splits."""
    from rnnonnx.predictor import CPU_CALL_SIZE, TEXT_BATCH_CHARS, text_batches

    return text_batches([key(spec, t) for t in texts], CPU_CALL_SIZE, TEXT_BATCH_CHARS, [len(t) for t in texts])


def padding(texts: Sequence[str], spec: TokenizerSpec, key: Key, chunk: int) -> float:
    """Recurrent steps computed (rows x each call's longest text) over the texts' own steps."""
    real = padded = 0
    for part in chunks(texts, chunk):
        steps = [tokens(spec, t) for t in part]
        for call in calls(part, spec, key):
            real += sum(steps[i] for i in call)
            padded += len(call) * max(steps[i] for i in call)
    return padded / max(1, real)


def grouped_runner(session: object, spec: TokenizerSpec, key: Key, chunk: int) -> Callable[[list[str]], None]:
    """Runs a whole file as the predictor would with this grouping: chunk, group, call."""
    import numpy as np

    def run(texts: list[str]) -> None:
        for part in chunks(texts, chunk):
            for call in calls(part, spec, key):
                session.run(["probabilities"], {"text": np.array([part[i] for i in call], dtype=object)})

    return run


def main(argv: Sequence[str] | None = None) -> None:
    import rnnonnx
    from rnnonnx.benchmark import spread
    from rnnonnx.machine import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("test", type=Path, help="CSV with a text column (the suite's test.csv)")
    parser.add_argument("--chunk", type=int, default=256, help="texts per predict (0: the whole file)")
    parser.add_argument("--precision", action="append", choices=("fp32", "int8"), help="repeatable (default both)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement, at least one pass")
    args = parser.parse_args(argv)
    if args.chunk < 0 or args.rounds < 1:
        parser.error("--chunk must be at least 0 and --rounds at least 1")
    precisions = args.precision or ["fp32", "int8"]
    texts, _ = read_rows(args.test)
    found = {}
    for precision in precisions:
        predictor = rnnonnx.load(args.bundle, precision=precision, graph="text", threads=1)
        spec = predictor.tokenizer.spec
        engines = {name: grouped_runner(predictor.session, spec, key, args.chunk) for name, key in KEYS.items()}
        for engine in engines.values():
            engine(texts)  # warm up
        found[precision] = rounds_of(engines, texts, BASE, args.rounds, args.seconds)
    chunk = f"chunks of {args.chunk}" if args.chunk else "the whole file at once"
    print(
        f"{args.test.parent.name} ({len(texts):,} texts, {chunk}), 1 thread, CPU {machine()['cpu']}: texts/s over grouping by "
        f"{BASE}, median (min-max) of {args.rounds} rounds\n"
    )
    print("| grouped by | steps computed / real steps | " + " | ".join(precisions) + " |")
    print("|---|---:|" + "---:|" * len(precisions))
    for name, key in KEYS.items():
        cells = [spread(found[p][name]) for p in precisions]
        speeds = " | ".join(f"{c['median']:.2f}x ({c['min']:.2f}-{c['max']:.2f})" for c in cells)
        print(f"| {name} | {padding(texts, spec, key, args.chunk):.3f} | {speeds} |")


if __name__ == "__main__":
    main()

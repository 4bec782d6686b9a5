"""Predict throughput of rnnonnx against fastText on the suite's sets, in one run, thread for thread.

For each set the suite has scored with both systems (``benchmarks/suite.py``), fastText is trained
again as the suite trained it (the train rows, the learning rate ``SUITE.json`` records as chosen,
wordNgrams 2, dim 50, epoch 25, one thread, in the fastText venv) and the suite's rnnonnx bundle is
loaded on one thread. Then the engines take turns, round after round, each in a fresh process
timing passes over the set's test texts for ``--seconds``:

* ``fasttext``: ``model.predict(texts, k=1)`` on the suite's fastText input, rnnonnx's tokens joined
  by spaces (so its own tokenizing is a whitespace split);
* ``rnnonnx``: ``Predictor.predict`` on the raw texts (graph ``auto``, as ``rnnonnx predict``);
* ``rnnonnx ids``: the same through the ids graph, and ``tokenize`` its Python tokenizer alone
  (``encode_batch``), which says how much of that time is tokenization and how much the model.

Ratios are taken within each round; the report gives each figure's median and range.

    python benchmarks/fasttext_speed.py                  # every set with a bundle and a fastText result
    python benchmarks/fasttext_speed.py --only debian-en,fortunes-de --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import FASTTEXT_VENV, SETS, fasttext_lines, read_rows  # noqa: E402  (benchmarks/ is a folder of scripts)

ENGINES = ("fasttext", "rnnonnx", "rnnonnx ids", "tokenize")


def timed_passes(predict: Any, texts: list[str], seconds: float) -> float:
    """Texts per second: one warm-up pass, then the median of passes filling ``seconds``."""
    predict(texts)
    rates, spent = [], 0.0
    while spent < seconds or len(rates) < 3:
        started = time.perf_counter()
        predict(texts)
        took = time.perf_counter() - started
        rates.append(len(texts) / took)
        spent += took
    return statistics.median(rates)


def worker(job: dict[str, Any]) -> None:
    """One engine's measurement, in its own process; prints texts/s."""
    texts = json.loads(Path(job["texts"]).read_text(encoding="utf-8"))
    if job["engine"] == "fasttext":
        import fasttext

        model = fasttext.load_model(job["model"])
        rate = timed_passes(lambda batch: model.predict(batch, k=1), texts, job["seconds"])
    else:
        from rnnonnx.predictor import Predictor

        predictor = Predictor(job["bundle"], threads=1, graph="ids" if job["engine"] != "rnnonnx" else "auto")
        if job["engine"] == "tokenize":
            rate = timed_passes(predictor.tokenizer.encode_batch, texts, job["seconds"])
        else:
            rate = timed_passes(predictor.predict, texts, job["seconds"])
    print(json.dumps({"texts_per_second": rate}))


def fasttext_train(job: dict[str, Any]) -> None:
    """In the fastText venv: the suite's fastText fit, saved to ``job["model"]``."""
    import fasttext

    model = fasttext.train_supervised(
        job["train"], lr=job["lr"], dim=50, epoch=25, wordNgrams=2, thread=1, seed=job["seed"], verbose=0
    )
    model.save_model(job["model"])


def run(python: Path, mode: str, job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), __file__, mode, json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        sys.exit(f"{mode} {job.get('engine', '')} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-suite"), help="the suite's splits and models")
    parser.add_argument("--results", type=Path, default=HERE / "SUITE.json")
    parser.add_argument("--only", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement and round")
    args = parser.parse_args()
    fasttext_python = FASTTEXT_VENV / "bin" / "python"
    if not fasttext_python.exists():
        sys.exit(f"no fastText venv at {FASTTEXT_VENV}: run python benchmarks/suite.py --setup")
    runs = json.loads(args.results.read_text())["runs"]  # "SET/SYSTEM" -> the suite's record
    names = [n for n in args.only.split(",") if n] or list(SETS)
    from rnnonnx.machine import cpu_name

    cpu = cpu_name()
    print(
        f"CPU {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start; "
        f"{args.rounds} rounds of {args.seconds:g} s per engine; one thread each"
    )
    print()
    print(
        "| set | test texts | fastText texts/s | rnnonnx texts/s | fastText / rnnonnx | rnnonnx ids graph texts/s "
        "| tokenization share of the ids graph's time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        chosen = runs.get(f"{name}/fasttext", {}).get("chosen", {})
        bundle = args.out / "models" / name / "rnnonnx" / "bundle"
        split = args.out / "splits" / name
        if "lr" not in chosen or not bundle.exists():
            continue
        with tempfile.TemporaryDirectory(prefix="rnnonnx-ftspeed-") as tmp:
            work = Path(tmp)
            analyzer = SETS[name]
            train, test = read_rows(split / "train.csv"), read_rows(split / "test.csv")
            (work / "train.txt").write_text("\n".join(fasttext_lines(train, analyzer)) + "\n", encoding="utf-8")
            lines = fasttext_lines(test, analyzer)
            (work / "fasttext.json").write_text(json.dumps([line.split(" ", 1)[1] if " " in line else "" for line in lines]))
            (work / "raw.json").write_text(json.dumps(test[0]))
            model = str(work / "model.bin")
            run(fasttext_python, "--train", {"train": str(work / "train.txt"), "lr": chosen["lr"], "seed": 0, "model": model})
            rates: dict[str, list[float]] = {engine: [] for engine in ENGINES}
            for _ in range(args.rounds):
                for engine in ENGINES:
                    python = fasttext_python if engine == "fasttext" else Path(sys.executable)
                    texts = work / ("fasttext.json" if engine == "fasttext" else "raw.json")
                    job = {"engine": engine, "texts": str(texts), "seconds": args.seconds, "model": model, "bundle": str(bundle)}
                    rates[engine].append(run(python, "--worker", job)["texts_per_second"])
        ratio = [f / r for f, r in zip(rates["fasttext"], rates["rnnonnx"])]
        share = [
            i / t for i, t in zip(rates["rnnonnx ids"], rates["tokenize"])
        ]  # time(tokenize) / time(ids) = rate(ids) / rate(tokenize)

        def cell(values: list[float], fmt: str) -> str:
            return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"

        print(
            f"| {name} | {len(test[0]):,} | {cell(rates['fasttext'], ',.0f')} | {cell(rates['rnnonnx'], ',.0f')} | "
            f"{cell(ratio, '.1f')}x | {cell(rates['rnnonnx ids'], ',.0f')} | {cell([100 * s for s in share], '.0f')}% |",
            flush=True,
        )
    print()
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--train":
        fasttext_train(json.loads(sys.argv[2]))
    else:
        main()

"""Choose the default training recipe on validation data.

Every experiment trains with ``rnnonnx.training.train_run`` on the built-in movie sentences, one change at
a time from a baseline, for a few seeds, and records validation accuracy, the epoch kept, epochs run,
wall-clock and CPU seconds. The rows of the shipped run's test split (seed 0, 10%) are removed before
any experiment, so no choice here can see them: each seed re-splits the remaining 9,037 rows into
train and validation, and seed 0 reproduces exactly the train/validation split of ``rnnonnx train``.
The test figure is printed only by ``--final``, once, for the chosen recipe.

    python benchmarks/recipe.py --list
    python benchmarks/recipe.py --only base,min_df=2 --seeds 0,1,2
    python benchmarks/recipe.py --table
    python benchmarks/recipe.py --final chosen      # the one test figure

Results accumulate in ``--work`` (default /tmp/rnnonnx-recipe/results.jsonl); runs that are already
there are not repeated. Run with one thread (the default here) so that CPU seconds are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The original defaults, spelled out so the baseline stays fixed whatever TrainConfig says now.
BASE: dict[str, Any] = {
    "arch": "lstm",
    "bidirectional": False,
    "layers": 1,
    "embed_dim": 128,
    "hidden": 128,
    "dropout": 0.3,
    "analyzer": "word",
    "max_len": 64,
    "min_df": 1,
    "max_vocab": 20000,
    "epochs": 10,
    "batch_size": 32,
    "lr": 2e-3,
    "patience": 3,
    "monitor": "val_loss",
    "seed": 0,
    "device": "cpu",
    "pooling": "last",
    "members": 1,
}

# name -> changes from BASE (or from another named experiment via "from").
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "base": {},
    # one change at a time
    "min_df=2": {"min_df": 2},
    "min_df=3": {"min_df": 3},
    "dropout=0.5": {"dropout": 0.5},
    "lr=1e-3": {"lr": 1e-3},
    "batch=64": {"batch_size": 64},
    "embed/hidden=64": {"embed_dim": 64, "hidden": 64},
    "gru": {"arch": "gru"},
    "bidirectional": {"bidirectional": True},
    "pool=max": {"pooling": "max"},
    "pool=mean": {"pooling": "mean"},
    "wd=1e-5": {"weight_decay": 1e-5},
    "sched=linear": {"schedule": "linear"},
    "sched=cosine": {"schedule": "cosine"},
    "label_smoothing=0.1": {"label_smoothing": 0.1},
    "select=accuracy": {"monitor": "val_accuracy"},
    # round 2: keep the epoch of best validation accuracy, then vary again
    "acc+min_df=2": {"from": "select=accuracy", "min_df": 2},
    "acc+embed/hidden=64": {"from": "select=accuracy", "embed_dim": 64, "hidden": 64},
    "acc+pool=max": {"from": "select=accuracy", "pooling": "max"},
    "acc+sched=linear": {"from": "select=accuracy", "schedule": "linear"},
    "acc+min_df=2+64": {"from": "acc+min_df=2", "embed_dim": 64, "hidden": 64},
    # round 3: from R = select=accuracy, min_df=2, embed/hidden 64
    "R+epochs=15": {"from": "acc+min_df=2+64", "epochs": 15},
    "R+epochs=15+lr=3e-3": {"from": "R+epochs=15", "lr": 3e-3},
    "R+epochs=15+sched=linear": {"from": "R+epochs=15", "schedule": "linear"},
    "R+epochs=15+dropout=0.5": {"from": "R+epochs=15", "dropout": 0.5},
    "R+epochs=15+min_df=3": {"from": "R+epochs=15", "min_df": 3},
    "R+epochs=15+bidirectional": {"from": "R+epochs=15", "bidirectional": True},
    "R+epochs=15+gru": {"from": "R+epochs=15", "arch": "gru"},
    "R+epochs=15+batch=64": {"from": "R+epochs=15", "batch_size": 64},
    "R+epochs=15+embed=96": {"from": "R+epochs=15", "embed_dim": 96},
    "R+epochs=15+arch=rnn": {"from": "R+epochs=15", "arch": "rnn"},
    "R+epochs=15+lr=3e-3+min_df=3": {"from": "R+epochs=15+lr=3e-3", "min_df": 3},
    "R+epochs=15+lr=3e-3+gru": {"from": "R+epochs=15+lr=3e-3", "arch": "gru"},
    # round 4: max-pooling was far better on long documents (other_data.py, validation only)
    "R+epochs=15+pool=max": {"from": "R+epochs=15", "pooling": "max"},
    "R+epochs=15+pool=max+arch=rnn": {"from": "R+epochs=15+pool=max", "arch": "rnn"},
    # round 5: regularisation and pooling that keep embedding -> RNN -> linear head, and a wide n-gram branch
    "R+word_dropout=0.1": {"from": "R+epochs=15", "word_dropout": 0.1},
    "R+word_dropout=0.25": {"from": "R+epochs=15", "word_dropout": 0.25},
    "R+pool=last+max+mean": {"from": "R+epochs=15", "pooling": "last+max+mean"},
    "R+wide": {"from": "R+epochs=15", "wide_buckets": 1 << 18},
    "R+wide+word_dropout=0.25": {"from": "R+wide", "word_dropout": 0.25},
    # round 6, after training batches became length-bucketed in the package (half the time per
    # epoch): R again as the reference, then ensembles of members from different seeds
    "R(bucketed)": {"from": "R+epochs=15"},
    "R+members=3": {"from": "R+epochs=15", "members": 3},
    "R+members=3+pool=concat": {"from": "R+members=3", "pooling": "concat"},
    "R+members=3+pool=max": {"from": "R+members=3", "pooling": "max"},
}


def config_for(name: str) -> dict[str, Any]:
    """The full option set of a named experiment."""
    changes = dict(EXPERIMENTS[name])
    start = config_for(changes.pop("from")) if "from" in changes else dict(BASE)
    return start | changes


# --- options that are not (yet) TrainConfig fields are applied by patching the fitting module -----


def _train_fields() -> set[str]:
    from rnnonnx.config import TrainConfig

    return {f.name for f in fields(TrainConfig)}


@contextmanager
def patched(extra: dict[str, Any], total_steps: int) -> Iterator[None]:
    """Apply pooling / weight decay / schedule / label smoothing, which the package does not offer itself."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    import rnnonnx.fitting as fitting
    from rnnonnx.model import TextClassifier
    from rnnonnx.text import PAD_ID

    pooling = extra.get("pooling", "last")
    word_dropout = float(extra.get("word_dropout", 0.0))
    wide = int(extra.get("wide_buckets", 0))
    weight_decay = float(extra.get("weight_decay", 0.0))
    schedule = extra.get("schedule", "none")
    smoothing = float(extra.get("label_smoothing", 0.0))
    originals = (fitting.TextClassifier, torch.optim.Adam, fitting.nn.CrossEntropyLoss)

    class Pooled(TextClassifier):
        """Pooling the package does not offer (mean; last, max and mean side by side), word dropout,
        and a wide n-gram branch."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            width = self.head.in_features
            if pooling == "last+max+mean":
                self.head = torch.nn.Linear(3 * width, config.num_classes)
            if wide:
                self.uni = torch.nn.Embedding(config.vocab_size, config.num_classes, padding_idx=PAD_ID)
                self.bi = torch.nn.Embedding(wide, config.num_classes)
                torch.nn.init.zeros_(self.uni.weight)
                torch.nn.init.zeros_(self.bi.weight)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            lengths = (input_ids != PAD_ID).sum(dim=1).clamp(min=1)
            if self.training and word_dropout:
                drop = (torch.rand(input_ids.shape, device=input_ids.device) < word_dropout) & (input_ids != PAD_ID)
                input_ids = input_ids.masked_fill(drop, 1)
            embedded = self.dropout(self.embedding(input_ids))
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
            valid = torch.arange(outputs.shape[1], device=outputs.device)[None, :] < lengths[:, None]
            index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
            last = outputs.gather(1, index).squeeze(1)
            if self.config.bidirectional:
                last = torch.cat([last[:, : self.config.hidden], outputs[:, 0, self.config.hidden :]], dim=-1)
            top = outputs.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)
            mean = outputs.sum(dim=1) / lengths[:, None].to(outputs.dtype)
            features = {"last": last, "max": top, "mean": mean, "last+max+mean": torch.cat([last, top, mean], dim=-1)}[pooling]
            logits = self.head(self.dropout(features))
            if wide:
                ids = input_ids[:, : outputs.shape[1]]
                mask = (ids != PAD_ID).to(logits.dtype)
                uni = (self.uni(ids) * mask[..., None]).sum(1)
                pair = (ids[:, :-1] * 1000003 + ids[:, 1:]) % wide
                pmask = mask[:, 1:] * mask[:, :-1]
                bi = (self.bi(pair) * pmask[..., None]).sum(1)
                logits = logits + (uni + bi) / lengths[:, None].to(logits.dtype).sqrt()
            return logits

    class Scheduled(originals[1]):  # type: ignore[misc, valid-type]
        """Adam with L2 weight decay and a per-step learning-rate schedule over the planned steps."""

        def __init__(self, params: Any, lr: float, **options: Any) -> None:
            super().__init__(params, lr=lr, weight_decay=weight_decay, **options)
            self.base_lr, self.done = lr, 0

        def step(self, closure: Any = None) -> Any:
            import math

            frac = min(1.0, self.done / max(1, total_steps))
            factor = {"none": 1.0, "linear": 1.0 - frac, "cosine": 0.5 * (1 + math.cos(math.pi * frac))}[schedule]
            for group in self.param_groups:
                group["lr"] = self.base_lr * max(factor, 0.0)
            self.done += 1
            return super().step(closure)

    class Smoothed(originals[2]):  # type: ignore[misc, valid-type]
        """Label smoothing on the training loss only (the validation loss keeps reduction='sum', unsmoothed)."""

        def __init__(self, reduction: str = "mean") -> None:
            super().__init__(reduction=reduction, label_smoothing=smoothing if reduction == "mean" else 0.0)

    try:
        if pooling != "last" or word_dropout or wide:
            fitting.TextClassifier = Pooled
        if weight_decay or schedule != "none":
            torch.optim.Adam = Scheduled
        if smoothing:
            fitting.nn.CrossEntropyLoss = Smoothed
        yield
    finally:
        fitting.TextClassifier, torch.optim.Adam, fitting.nn.CrossEntropyLoss = originals


# --- data --------------------------------------------------------------------------------------------


def pool_without_test() -> tuple[Any, list[int]]:
    """The built-in rows minus the shipped run's test split (seed 0), and those test row indices."""
    from rnnonnx.data import LabelledTexts, read_builtin, split

    data = read_builtin()
    test = set(split(data.labels, 0.1, 0.1, 0).test)
    keep = [i for i in range(len(data.texts)) if i not in test]
    pool = LabelledTexts([data.texts[i] for i in keep], [data.labels[i] for i in keep], data.source)
    return pool, sorted(test)


def run_one(name: str, seed: int, work: Path, final: bool = False) -> dict[str, Any]:
    """Train one experiment at one seed; returns the record (test figures only when ``final``)."""
    import math

    from rnnonnx.config import TrainConfig
    from rnnonnx.data import read_builtin
    from rnnonnx.training import train_run as train

    options = config_for(name) | {"seed": seed}
    from rnnonnx.config import POOLINGS

    known = _train_fields() - ({"pooling"} if options["pooling"] not in POOLINGS else set())  # others: patched in
    given = {k: v for k, v in options.items() if k in known}
    extra = {k: v for k, v in options.items() if k not in known}
    if extra and options.get("members", 1) > 1:
        raise SystemExit(f"{name}: {sorted(extra)} are patched into this process only, not into ensemble member workers")
    if final:
        data = read_builtin()
        config = TrainConfig(**given)
    else:
        data, _ = pool_without_test()
        config = TrainConfig(**given | {"validation": 0.1 / 0.9, "test": 0.0})
    train_rows = round(len(data.texts) * 0.8) if final else len(data.texts) - round(len(data.texts) * config.validation)
    total_steps = config.epochs * math.ceil(train_rows / config.batch_size)
    out = work / "runs" / f"{name.replace('/', '_')}-seed{seed}{'-final' if final else ''}"
    wall, cpu = time.perf_counter(), time.process_time()
    with patched(extra, total_steps):
        metrics = train(config, out, data, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    epochs_run = len(metrics.epochs)
    record = {
        "name": name,
        "seed": seed,
        "val_accuracy": metrics.val_accuracy,
        "val_loss": metrics.val_loss,
        "best_epoch": metrics.best_epoch,
        "epochs_run": epochs_run,
        "max_val_accuracy": max(e["val_accuracy"] for e in metrics.epochs),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_s_per_epoch": round(cpu / epochs_run, 1),
        "vocab": _vocab_size(out),
        "options": options,
        "load": os.getloadavg()[0],
    }
    if final:
        record |= {"test_accuracy": metrics.test_accuracy, "test_loss": metrics.test_loss, "final": True}
    return record


def _vocab_size(run_dir: Path) -> int:
    return len(json.loads((run_dir / "tokenizer.json").read_text())["vocab"])


def load_results(path: Path) -> list[dict[str, Any]]:
    """Every record written so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: per experiment, mean validation accuracy over seeds and the per-seed figures."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if not r.get("final"):
            by_name.setdefault(r["name"], []).append(r)
    lines = [
        "| experiment | seeds | val acc mean | per seed | best epoch | "
        "epochs run | max val acc (any epoch) | CPU s/epoch | CPU s total | wall s | vocab |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [n for n in EXPERIMENTS if n in by_name] + [n for n in by_name if n not in EXPERIMENTS]:
        rs = sorted(by_name[name], key=lambda r: r["seed"])
        accs = [r["val_accuracy"] for r in rs]
        lines.append(
            f"| {name} | {len(rs)} | {100 * statistics.mean(accs):.1f} | {' / '.join(f'{100 * a:.1f}' for a in accs)} | "
            f"{' / '.join(str(r['best_epoch']) for r in rs)} | {' / '.join(str(r['epochs_run']) for r in rs)} | "
            f"{100 * statistics.mean(r['max_val_accuracy'] for r in rs):.1f} | "
            f"{statistics.mean(r['cpu_s_per_epoch'] for r in rs):.1f} | {statistics.mean(r['cpu_s'] for r in rs):.0f} | "
            f"{statistics.mean(r['wall_s'] for r in rs):.0f} | {rs[0]['vocab']} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Command line: run experiments, print the table, or run the final test once."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated experiment names (default: all)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rnnonnx-recipe"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="list the experiments and their options")
    parser.add_argument("--table", action="store_true", help="only print the table of results so far")
    parser.add_argument("--final", metavar="NAME", help="train NAME at seed 0 on the full data and print its test accuracy")
    args = parser.parse_args()

    if args.list:
        for name in EXPERIMENTS:
            print(f"{name:28s} {json.dumps(config_for(name))}")
        return
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    results = args.work / "results.jsonl"
    if args.final:
        record = run_one(args.final, 0, args.work, final=True)
        with results.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(
            json.dumps(
                {k: record[k] for k in ("name", "val_accuracy", "test_accuracy", "best_epoch", "epochs_run", "cpu_s", "wall_s")}
            )
        )
        return
    if not args.table:
        names = [n for n in args.only.split(",") if n] or list(EXPERIMENTS)
        unknown = [n for n in names if n not in EXPERIMENTS]
        if unknown:
            parser.error(f"unknown experiment(s): {', '.join(unknown)}")
        done = {(r["name"], r["seed"]) for r in load_results(results) if not r.get("final")}
        for name in names:
            for seed in (int(s) for s in args.seeds.split(",")):
                if (name, seed) in done:
                    continue
                record = run_one(name, seed, args.work)
                with results.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                print(
                    f"{name} seed {seed}: val {100 * record['val_accuracy']:.1f} "
                    f"(epoch {record['best_epoch']}/{record['epochs_run']}), "
                    f"{record['cpu_s']:.0f} CPU s, {record['wall_s']:.0f} s wall",
                    flush=True,
                )
    print(table(load_results(results)))


if __name__ == "__main__":
    main()

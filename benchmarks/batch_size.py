"""One member's fit at a given batch size and learning rate, on the training split ``rnnonnx train``
would make of a CSV: validation accuracy per epoch, the best one, and the time (one thread).

The evidence behind ``--batch-size auto`` (benchmarks/recipe.md): on many short texts a step's cost is
mostly fixed (Adam updates every embedding row whatever the batch), so larger batches train an epoch
in less time, while the learning rate must grow with them to keep up per epoch.

    python benchmarks/batch_size.py DATA.csv --batch 32 --lr 2e-3
    python benchmarks/batch_size.py DATA.csv --batch 128 --lr 4e-3 --member 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rnnonnx.config import TrainConfig
from rnnonnx.data import check_classes, read_file
from rnnonnx.fitting import FitJob, fit_member
from rnnonnx.text import Tokenizer, TokenizerSpec
from rnnonnx.training import POOLING_REFERENCE_LEN, build_vocab, resolve_max_len, resolve_pooling, split_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--member", type=int, default=0, help="member index: its seed is the run's seed + 1000 x member")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = read_file(args.data)
    labels = check_classes(data)
    config = TrainConfig(batch_size=args.batch, lr=args.lr, members=1)
    rows = split_rows(data, config)
    max_len, config = resolve_max_len(config, rows.train[0])
    spec = TokenizerSpec(analyzer=config.analyzer, max_len=max_len)
    tokenizer = Tokenizer(spec, build_vocab(rows.train[0], spec, config.min_df, config.max_vocab))
    index = {name: i for i, name in enumerate(labels)}

    def encoded(part: tuple[list[str], list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(tokenizer.encode_batch(part[0])), torch.tensor([index[n] for n in part[1]])

    train, validation = encoded(rows.train), encoded(rows.validation)
    pooling = resolve_pooling(config.pooling, train[0], POOLING_REFERENCE_LEN)
    job = FitJob(config.model_config(len(tokenizer.vocab), len(labels), pooling), config, *train, *validation, progress=False)
    started = time.perf_counter()
    fit = fit_member(job, args.member, torch.device("cpu"), live=False)
    seconds = time.perf_counter() - started
    curve = [round(100 * row["val_accuracy"], 1) for row in fit.history]
    print(
        json.dumps(
            {
                "batch": args.batch,
                "lr": args.lr,
                "member": args.member,
                "train_rows": len(train[0]),
                "seconds": round(seconds, 1),
                "seconds_per_epoch": round(seconds / len(curve), 2),
                "best_epoch": fit.best_epoch,
                "best_val_accuracy": max(curve),
                "curve": curve,
            }
        )
    )


if __name__ == "__main__":
    main()

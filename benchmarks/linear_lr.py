"""The linear member alone at several learning rates, on one set of the benchmark suite.

Fits :class:`rnnonnx.linear.LinearMember` on the suite's training rows (read up to 4,096 tokens, the
default vocabulary rules) and prints its validation and test accuracy for each ``--lr``; the
default rate (``rnnonnx.linear.LINEAR_LR``) was chosen from these on validation (benchmarks/recipe.md).

    python benchmarks/linear_lr.py man-de --lr 0.02,0.05,0.2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rnnonnx import linear
from rnnonnx.config import LINEAR_MAX_LEN_CAP, TrainConfig
from rnnonnx.data import read_file
from rnnonnx.model import NGRAM_PRIME
from rnnonnx.text import Tokenizer, TokenizerSpec
from rnnonnx.training import build_vocab

# The hashed-bigram rows of ``--linear-buckets 65536`` (the member's bigrams before the exact index).
LINEAR_BUCKETS = 65536


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", help="a set name under SPLITS (train.csv, validation.csv, test.csv)")
    parser.add_argument("--splits", type=Path, default=Path("/tmp/rnnonnx-suite/splits"), help="benchmarks/suite.py's splits")
    parser.add_argument("--analyzer", default="word", choices=("word", "char"))
    parser.add_argument("--lr", default="0.02,0.05,0.2", help="comma-separated learning rates")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {name: read_file(str(args.splits / args.set / f"{name}.csv")) for name in ("train", "validation", "test")}
    labels = sorted(set(parts["train"].labels))
    index = {label: i for i, label in enumerate(labels)}
    defaults = TrainConfig()
    spec = TokenizerSpec(analyzer=args.analyzer, max_len=LINEAR_MAX_LEN_CAP)
    tokenizer = Tokenizer(spec, build_vocab(parts["train"].texts, spec, defaults.min_df, defaults.max_vocab))
    encoded = {
        name: (torch.from_numpy(tokenizer.encode_batch(data.texts)), torch.tensor([index[label] for label in data.labels]))
        for name, data in parts.items()
    }
    cpu = torch.device("cpu")
    for rate in (float(r) for r in args.lr.split(",")):
        linear.LINEAR_LR = rate
        started = time.perf_counter()
        member = linear.LinearMember(len(tokenizer.vocab), LINEAR_BUCKETS, len(labels), NGRAM_PRIME)
        fit = linear.fit_linear(member, encoded["train"], encoded["validation"], cpu, defaults.seed)
        test = linear.scores(fit.member, *encoded["test"], cpu)[1]
        print(
            f"{args.set} lr {rate:g}: validation {100 * fit.val_accuracy:.1f}, test {100 * test:.1f}, "
            f"epoch {fit.best_epoch}, {time.perf_counter() - started:.0f} s"
        )


if __name__ == "__main__":
    main()

"""What separates the linear member from TF-IDF + logistic regression? Variants of the member, one
change at a time, against the suite's TF-IDF + LR with and without sublinear tf; validation accuracy
only (each set's test rows are left alone).

The member (rnnonnx.linear.LinearMember): token rows of the default vocabulary (min_df 2, at most
20,000 words) and bigram rows of its exact index (the bigrams of at least two training rows), raw
counts times idf over a per-position norm, read up to the 95th percentile of token counts (at most
4,096), fitted with Adam and early stopping. Variants: ``hashed 65,536`` and ``hashed 1M`` (every
bigram hashed into that many rows; the first was the default before the exact index); ``exact
df>=1`` (every training bigram in the index); ``sublinear`` (1 + ln tf, over the bag's true L2 norm,
as TfidfVectorizer(sublinear_tf=True)); ``true norm`` (raw tf over the bag's true L2 norm); ``all
words`` (min_df 1, no cap); ``whole texts`` (30,000 tokens); ``L-BFGS C=...`` (the member's own
features fitted to convergence with an L2 penalty, as scikit-learn's LogisticRegression does).
``--only`` runs some of them.

    python benchmarks/linear_variants.py kernel-docs --only member "hashed 65,536"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from rnnonnx import linear
from rnnonnx.config import LINEAR_MAX_LEN_CAP, TrainConfig
from rnnonnx.data import read_file
from rnnonnx.model import NGRAM_PRIME
from rnnonnx.text import Tokenizer, TokenizerSpec
from rnnonnx.training import build_vocab

# The hashed-bigram rows of ``--linear-buckets 65536`` (the member's bigrams before the exact index).
LINEAR_BUCKETS = 65536

WHOLE = 30_000
C_GRID = (1.0, 10.0, 100.0)


def repeats(features: torch.Tensor) -> torch.Tensor:
    """How often each position's feature occurs in its row (sort, run lengths, scatter back)."""
    ordered, order = features.sort(dim=1)
    starts = torch.cat([torch.ones_like(ordered[:, :1], dtype=torch.bool), ordered[:, 1:] != ordered[:, :-1]], dim=1)
    runs = starts.long().cumsum(dim=1) - 1
    lengths = torch.zeros_like(runs).scatter_add(1, runs, torch.ones_like(runs))
    return torch.zeros_like(runs).scatter(1, order, lengths.gather(1, runs)).float()


class TrueNorm(linear.LinearMember):
    """Raw tf x idf over the true L2 norm of the text's bag."""

    sublinear = False

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        features = self.features(input_ids)
        idf = self.idf[features].float()
        counts = repeats(features)
        weights = idf * (1 + counts.log()) / counts if self.sublinear else idf
        norm = (weights.pow(2) * counts).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        return (self.table(features) * (weights / norm).unsqueeze(-1)).sum(dim=1) + self.bias


class Sublinear(TrueNorm):
    """(1 + ln tf) x idf over the true L2 norm, TfidfVectorizer(sublinear_tf=True)'s weighting."""

    sublinear = True


def encoded(parts: dict[str, Any], analyzer: str, min_df: int, max_vocab: int | None, read: int | None) -> tuple[Tokenizer, dict]:
    spec = TokenizerSpec(analyzer=analyzer, max_len=LINEAR_MAX_LEN_CAP)
    vocab = build_vocab(parts["train"].texts, spec, min_df, max_vocab)
    counts = [len(spec.tokens(t)) for t in parts["train"].texts]
    read = read or TrainConfig().resolved_linear_max_len(counts, 16)
    tokenizer = Tokenizer(TokenizerSpec(analyzer=analyzer, max_len=read), vocab)
    labels = {name: i for i, name in enumerate(sorted(set(parts["train"].labels)))}
    return tokenizer, {
        p: (torch.from_numpy(tokenizer.encode_batch(x.texts)), torch.tensor([labels[n] for n in x.labels]))
        for p, x in parts.items()
    }


def adam(cls: type, tokenizer: Tokenizer, data: dict, classes: int, buckets: int | None = None, min_df: int = 2) -> float:
    """Validation accuracy of the member fitted as ``rnnonnx train`` does; its bigrams hashed into
    ``buckets`` rows, or (``None``) the exact index of those in ``min_df`` training rows."""
    if buckets is None:
        member = cls.exact(data["train"][0], len(tokenizer.vocab), classes, NGRAM_PRIME, min_df)
    else:
        member = cls(len(tokenizer.vocab), buckets, classes, NGRAM_PRIME)
    return linear.fit_linear(member, data["train"], data["validation"], torch.device("cpu"), 0).val_accuracy


def lbfgs(tokenizer: Tokenizer, data: dict, classes: int, c: float) -> float:
    """The member's features as a sparse matrix, logistic regression fitted by L-BFGS with penalty 1/C."""
    member = linear.LinearMember.exact(data["train"][0], len(tokenizer.vocab), classes, NGRAM_PRIME)
    member.set_idf(data["train"][0])
    width = len(tokenizer.vocab) + member.buckets

    def design(ids: torch.Tensor) -> torch.Tensor:
        features = member.features(ids)
        weights = member.idf[features].float()
        weights = weights / weights.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        rows = torch.arange(len(ids)).unsqueeze(1).expand_as(features)
        keep = weights != 0
        index = torch.stack([rows[keep], features[keep]])
        return torch.sparse_coo_tensor(index, weights[keep], (len(ids), width)).coalesce()

    train, validation = design(data["train"][0]), design(data["validation"][0])
    weight = torch.zeros(width, classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, history_size=20, line_search_fn="strong_wolfe")
    rows = len(data["train"][1])

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.sparse.mm(train, weight) + bias
        loss = torch.nn.functional.cross_entropy(logits, data["train"][1]) + weight.pow(2).sum() / (2 * c * rows)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(((torch.sparse.mm(validation, weight) + bias).argmax(1) == data["validation"][1]).double().mean())


def tfidf(parts: dict[str, Any], analyzer: str, sublinear: bool) -> tuple[float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from rnnonnx.baseline import NgramAnalyzer

    vectorizer = TfidfVectorizer(analyzer=NgramAnalyzer(TokenizerSpec(analyzer=analyzer)), sublinear_tf=sublinear)
    train = vectorizer.fit_transform(parts["train"].texts)
    validation = vectorizer.transform(parts["validation"].texts)
    tried = {
        c: float(
            (
                LogisticRegression(C=c, max_iter=2000).fit(train, parts["train"].labels).predict(validation)
                == parts["validation"].labels
            ).mean()
        )
        for c in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    }
    best = max(tried, key=lambda c: (tried[c], -c))
    return tried[best], best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set")
    parser.add_argument("--splits", type=Path, default=Path("/tmp/rnnonnx-suite/splits"))
    parser.add_argument("--analyzer", default="word", choices=("word", "char"))
    parser.add_argument("--only", nargs="+", help="run only these variants (names as printed; prefixes match)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {p: read_file(str(args.splits / args.set / f"{p}.csv")) for p in ("train", "validation")}
    classes = len(set(parts["train"].labels))
    defaults = TrainConfig()
    tokenizer, data = encoded(parts, args.analyzer, defaults.min_df, defaults.max_vocab, None)
    started = time.perf_counter()
    variants: dict[str, Any] = {
        "member": lambda: adam(linear.LinearMember, tokenizer, data, classes),
        "hashed 65,536": lambda: adam(linear.LinearMember, tokenizer, data, classes, buckets=LINEAR_BUCKETS),
        "hashed 1M": lambda: adam(linear.LinearMember, tokenizer, data, classes, buckets=1 << 20),
        "exact df>=1": lambda: adam(linear.LinearMember, tokenizer, data, classes, min_df=1),
        "true norm": lambda: adam(TrueNorm, tokenizer, data, classes),
        "sublinear": lambda: adam(Sublinear, tokenizer, data, classes),
        "all words": lambda: adam(linear.LinearMember, *encoded(parts, args.analyzer, 1, None, None), classes),
        "whole texts": lambda: adam(
            linear.LinearMember, *encoded(parts, args.analyzer, defaults.min_df, defaults.max_vocab, WHOLE), classes
        ),
        **{f"L-BFGS C={c:g}": (lambda c=c: lbfgs(tokenizer, data, classes, c)) for c in C_GRID},
        **{f"TF-IDF+LR {'sublinear' if s else 'raw'} tf": (lambda s=s: tfidf(parts, args.analyzer, s)) for s in (True, False)},
    }
    results: dict[str, float] = {}
    for name, run in variants.items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        value = run()
        if isinstance(value, tuple):  # TF-IDF + LR: the accuracy at the best C
            value, c = value
            name = f"{name} (C={c:g})"
        results[name] = value
    cells = " | ".join(f"{name} {100 * value:.1f}" for name, value in results.items())
    print(f"{args.set} ({len(parts['validation'].texts)} validation rows, {time.perf_counter() - started:.0f} s): {cells}")


if __name__ == "__main__":
    main()

"""A linear baseline fitted beside the RNN: TF-IDF over word 1-2-grams, then logistic regression.

It answers "does the recurrent model earn its cost?": it is fitted on exactly the training rows
the RNN saw and scored on the same validation and test rows. Its n-grams are built from
:mod:`rnnonnx.text` tokens, so tokenization keeps one definition; unlike the RNN it reads
whole texts (no ``max_len`` cut), as a bag-of-n-grams model would in practice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .text import TokenizerSpec

if TYPE_CHECKING:
    from .run import Metrics

BASELINE_NAME = "tfidf-1-2gram+logreg"


class NgramAnalyzer:
    """Unigrams and adjacent-token bigrams of one text (a class, so fitted models pickle)."""

    def __init__(self, spec: TokenizerSpec) -> None:
        self.spec = spec

    def __call__(self, text: str) -> list[str]:
        tokens = self.spec.tokens(text)
        return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def fit_baseline(texts: Sequence[str], labels: Sequence[str], spec: TokenizerSpec, min_df: int = 1, seed: int = 0) -> Any:
    """A fitted scikit-learn pipeline (``TfidfVectorizer`` then ``LogisticRegression``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(analyzer=NgramAnalyzer(spec), min_df=min_df, sublinear_tf=True),
        LogisticRegression(max_iter=1000, random_state=seed),
    )
    return pipeline.fit(list(texts), list(labels))


def score_baseline(pipeline: Any, texts: Sequence[str], labels: Sequence[str]) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, the two numbers the RNN's training records too."""
    proba = pipeline.predict_proba(list(texts))
    classes = {name: i for i, name in enumerate(pipeline.classes_)}
    true = np.array([classes[name] for name in labels])
    picked = np.clip(proba[np.arange(len(true)), true], 1e-15, 1.0)
    return float(-np.log(picked).mean()), float((proba.argmax(axis=1) == true).mean())


def baseline_metrics(
    train: tuple[list[str], list[str]],
    validation: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    spec: TokenizerSpec,
    min_df: int = 1,
    seed: int = 0,
    refit: bool = False,
) -> dict[str, Any]:
    """Fit on ``train`` and score on ``validation`` and (when it has rows) ``test``: the record kept in metrics.json.

    ``refit`` (the RNN's ``--refit``): the test rows are scored by a pipeline fitted again on
    ``train`` + ``validation``, so both models see the same rows before their test score."""
    started = time.perf_counter()
    pipeline = fit_baseline(*train, spec, min_df, seed)
    record: dict[str, Any] = {"model": BASELINE_NAME, "features": len(pipeline[0].vocabulary_)}
    record["val_loss"], record["val_accuracy"] = score_baseline(pipeline, *validation)
    if refit and test[0]:
        pipeline = fit_baseline(train[0] + validation[0], train[1] + validation[1], spec, min_df, seed)
        record["refit"] = True
    if test[0]:
        record["test_loss"], record["test_accuracy"] = score_baseline(pipeline, *test)
    record["fit_seconds"] = round(time.perf_counter() - started, 2)
    return record


def comparison(metrics: "Metrics", rnn_name: str) -> str:
    """The RNN and the baseline side by side, and which one wins on held-out accuracy."""
    base = metrics.baseline or {}
    ours = {k: v for k, v in metrics.to_dict().items() if v is not None}
    rnn_label = (
        f"{rnn_name} (ensemble of {len(metrics.members)})" if metrics.members else f"{rnn_name} (epoch {metrics.best_epoch})"
    )
    width = max(len(rnn_label), len(base["model"]))
    columns = [c for c in ("val_loss", "val_accuracy", "test_loss", "test_accuracy") if c in ours and c in base]
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>13}" for c in columns)]
    for name, record in ((rnn_label, ours), (base["model"], base)):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{record[c]:>13.4f}" for c in columns))
    key = "test_accuracy" if "test_accuracy" in columns else "val_accuracy"
    gap = 100 * (ours[key] - base[key])
    part = key.split("_")[0]
    if abs(gap) < 0.005:
        lines.append(f"the RNN and the baseline tie on {part} accuracy")
    else:
        winner, loser = ("the RNN", "the baseline") if gap > 0 else ("the baseline", "the RNN")
        lines.append(f"{winner} beats {loser} on {part} accuracy by {abs(gap):.2f} points")
    if metrics.validation_is_train and key == "val_accuracy":
        lines.append("(too little data to hold rows out: these are training rows, so the comparison says little)")
    return "\n".join(lines)

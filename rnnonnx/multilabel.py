"""Multi-label texts: the split, per-label thresholds tuned on validation, and the scores
``evaluate`` reports (micro/macro F1, precision@k, recall@k, subset accuracy, Hamming loss).

A multi-label model gives each label its own probability (a sigmoid); a label is predicted when
its probability reaches that label's threshold. Runs on the predictor side: numpy only. Scores
follow scikit-learn's conventions, as :mod:`rnnonnx.evaluation` does: a ratio whose denominator
is zero counts as 0, and macro averages run over the labels present in the true or predicted sets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DataError, RnnonnxError

# The threshold of a label that validation cannot tune (no positive validation row): where a
# sigmoid says "as likely as not".
DEFAULT_THRESHOLD = 0.5
# precision@k and recall@k are reported for these k (capped at the number of labels).
TOP_KS = (1, 3)


def multi_hot(sets: Sequence[Sequence[str] | str], labels: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
    """``(targets, unknown)``: a 0/1 matrix ``[rows, labels]`` of each row's labels (a string
    counts as a set of one), and how often each label the model does not know occurred (such a
    label is left out of its row; the row still counts)."""
    index = {name: j for j, name in enumerate(labels)}
    targets = np.zeros((len(sets), len(labels)), dtype=np.float32)
    unknown: dict[str, int] = {}
    for i, found in enumerate(sets):
        for name in [found] if isinstance(found, str) else found:
            if name in index:
                targets[i, index[name]] = 1.0
            else:
                unknown[name] = unknown.get(name, 0) + 1
    return targets, unknown


def label_names(sets: Sequence[Sequence[str]]) -> list[str]:
    """The distinct labels of multi-label data, in :func:`rnnonnx.data.sorted_labels` order;
    fewer than two is an error (a label set of one is a binary classifier: give it as multi-class)."""
    from .data import sorted_labels

    names = sorted_labels([name for found in sets for name in found])
    if len(names) < 2:
        raise DataError(f"multi-label data needs at least two distinct labels, found {names}")
    return names


def split_indices(rows: int, validation: float, test: float, seed: int) -> tuple[list[int], list[int], list[int], bool]:
    """``(train, validation, test, validation_is_train)``: a seeded random split (label sets
    cannot be stratified as single labels are). A part too small to hold a row is dropped; without
    validation rows, validation reuses the training rows, as :func:`rnnonnx.data.split` does."""
    order = np.random.default_rng(seed).permutation(rows).tolist()
    n_test = round(rows * test) if rows - round(rows * test) >= 2 else 0
    test_idx, rest = sorted(order[:n_test]), order[n_test:]
    n_val = round(rows * validation)
    if n_val < 1 or len(rest) - n_val < 1:
        return sorted(rest), sorted(rest), test_idx, True
    return sorted(rest[n_val:]), sorted(rest[:n_val]), test_idx, False


def tune_thresholds(proba: np.ndarray, targets: np.ndarray) -> list[float]:
    """Per label, the threshold that maximises that label's F1 on these (validation) rows: halfway
    between the lowest probability it predicts and the next one below (so the choice does not sit on
    a validation row). ``DEFAULT_THRESHOLD`` for a label without a positive row. Thresholds are
    float32 values, so the predictor's and the graph's float32 comparisons agree exactly."""
    proba = np.asarray(proba, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    thresholds = []
    for j in range(proba.shape[1]):
        positives = int(targets[:, j].sum())
        if positives == 0:
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        order = np.argsort(-proba[:, j], kind="stable")
        p, hit = proba[order, j], targets[order, j]
        k = np.arange(1, len(p) + 1)
        f1 = 2 * np.cumsum(hit) / (k + positives)
        cut = np.r_[p[1:] < p[:-1], True]  # predicting the top k is possible only between distinct values
        best = int(np.argmax(np.where(cut, f1, -1.0)))
        value = (p[best] + p[best + 1]) / 2 if best + 1 < len(p) else p[best]
        thresholds.append(float(np.float32(min(max(value, 1e-6), 1.0))))
    return thresholds


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


def scores(proba: np.ndarray, targets: np.ndarray, thresholds: Sequence[float], top_ks: Sequence[int] = TOP_KS) -> dict[str, Any]:
    """Every multi-label score of ``proba`` against 0/1 ``targets`` (``[rows, labels]``), a label
    predicted where its probability is at least its threshold."""
    proba = np.asarray(proba, dtype=np.float64)
    truth = np.asarray(targets) > 0.5
    chosen = proba >= np.asarray(thresholds, dtype=np.float32).astype(np.float64)[None, :]
    tp = (chosen & truth).sum(axis=0).astype(np.float64)
    predicted, support = chosen.sum(axis=0), truth.sum(axis=0)
    precision, recall, f1 = _ratio(tp, predicted), _ratio(tp, support), _ratio(2 * tp, predicted + support)
    present = (predicted + support) > 0
    rows, width = truth.shape
    result: dict[str, Any] = {
        "micro_precision": float(_ratio(tp.sum(), predicted.sum())),
        "micro_recall": float(_ratio(tp.sum(), support.sum())),
        "micro_f1": float(_ratio(2 * tp.sum(), predicted.sum() + support.sum())),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "subset_accuracy": float((chosen == truth).all(axis=1).mean()) if rows else 0.0,
        "hamming_loss": float((chosen != truth).mean()) if rows else 0.0,
        "labels_per_row": {
            "true": float(truth.sum(axis=1).mean()) if rows else 0.0,
            "predicted": float(chosen.sum(axis=1).mean()) if rows else 0.0,
        },
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
    }
    order = np.argsort(-proba, axis=1, kind="stable")
    labelled = truth.sum(axis=1) > 0
    for k in sorted({min(k, width) for k in top_ks}):
        hits = np.take_along_axis(truth, order[:, :k], axis=1).sum(axis=1)
        result[f"precision_at_{k}"] = float((hits / k).mean()) if rows else 0.0
        result[f"recall_at_{k}"] = float((hits[labelled] / truth.sum(axis=1)[labelled]).mean()) if labelled.any() else 0.0
    return result


@dataclass
class MultiLabelEvaluation:
    """What ``rnnonnx evaluate`` reports for a multi-label bundle. ``min_score``, when given,
    replaced every per-label threshold."""

    model: str
    data: str
    labels: list[str]
    rows: int
    proba: np.ndarray
    targets: np.ndarray
    thresholds: list[float]
    unknown: dict[str, int] = field(default_factory=dict)
    min_score: float | None = None
    plots: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> int:
        return self.rows

    @property
    def excluded(self) -> int:
        """Label occurrences left out because the model does not know the label (rows stay)."""
        return sum(self.unknown.values())

    def scores(self) -> dict[str, Any]:
        """See :func:`scores`."""
        return scores(self.proba, self.targets, self.thresholds)

    def unknown_note(self) -> str | None:
        """One line naming the labels the model does not know, or None."""
        if not self.unknown:
            return None
        ranked = sorted(self.unknown.items(), key=lambda item: (-item[1], item[0]))
        shown = ", ".join(f"{name!r} ({count})" for name, count in ranked[:10])
        more = f" and {len(ranked) - 10} more" if len(ranked) > 10 else ""
        return f"{self.excluded} label occurrence(s) left out of the metrics: labels the model does not know: {shown}{more}"

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        s = self.scores()
        per_label = {
            name: {
                "precision": s["precision"][j],
                "recall": s["recall"][j],
                "f1": s["f1"][j],
                "support": s["support"][j],
                "threshold": t,
            }
            for j, (name, t) in enumerate(zip(self.labels, self.thresholds))
        }
        headline = {k: v for k, v in s.items() if k not in ("precision", "recall", "f1", "support")}
        return {
            "model": self.model,
            "data": self.data,
            "task": "multi-label",
            "rows": self.rows,
            "evaluated": self.evaluated,
            "unknown_labels": dict(self.unknown),
            **headline,
            "per_label": per_label,
            "min_score": self.min_score,
            "plots": self.plots,
        }

    def to_json(self) -> str:
        """One JSON document."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def table(self) -> str:
        """A readable report: headline scores and the per-label table."""
        s = self.scores()
        width = max([9] + [len(n) for n in self.labels])
        lines = [f"model     {self.model} (multi-label)", f"data      {self.data}: {self.rows} row(s) evaluated"]
        note = self.unknown_note()
        if note:
            lines.append(f"excluded  {note}")
        rule = (
            f"every label at min-score {self.min_score:g}"
            if self.min_score is not None
            else "per-label thresholds from validation"
        )
        lines += [
            f"micro-F1  {s['micro_f1']:.4f}  (precision {s['micro_precision']:.4f}, recall {s['micro_recall']:.4f}; {rule})",
            f"macro-F1  {s['macro_f1']:.4f}",
            f"subset accuracy {s['subset_accuracy']:.4f}  Hamming loss {s['hamming_loss']:.4f}  "
            f"labels per row: true {s['labels_per_row']['true']:.2f}, predicted {s['labels_per_row']['predicted']:.2f}",
            "  ".join(
                f"P@{k} {s[f'precision_at_{k}']:.4f}  R@{k} {s[f'recall_at_{k}']:.4f}"
                for k in sorted({min(k, len(self.labels)) for k in TOP_KS})
            ),
            "",
            f"{'label':<{width}}  threshold  precision  recall  f1      support",
        ]
        for j, name in enumerate(self.labels):
            lines.append(
                f"{name:<{width}}  {self.thresholds[j]:<9.4f}  {s['precision'][j]:<9.4f}  {s['recall'][j]:<6.4f}  "
                f"{s['f1'][j]:<6.4f}  {s['support'][j]}"
            )
        if self.plots:
            lines += ["", *(f"plot written: {p}" for p in self.plots)]
        return "\n".join(lines)


def evaluate_sets(
    model: str,
    data: str,
    labels: Sequence[str],
    true: Sequence[Sequence[str] | str],
    proba: np.ndarray,
    thresholds: Sequence[float],
    min_score: float | None = None,
) -> MultiLabelEvaluation:
    """Score probabilities against each row's true label set; ``min_score`` replaces every threshold."""
    if min_score is not None and (
        isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1
    ):
        raise RnnonnxError(f"min_score must be a probability between 0 and 1, not {min_score!r}")
    targets, unknown = multi_hot(true, labels)
    if unknown and not targets.any():
        found = ", ".join(repr(n) for n in sorted(unknown)[:10])
        raise DataError(f"{data}: no row has a label the model knows ({', '.join(map(repr, labels))}); the file has {found}")
    used = [float(min_score)] * len(labels) if min_score is not None else list(thresholds)
    return MultiLabelEvaluation(model, data, list(labels), len(true), np.asarray(proba), targets, used, unknown, min_score)

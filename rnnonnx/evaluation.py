"""Scoring a bundle on labelled texts: accuracy, macro-F1, per-class scores, confusion matrix;
coverage against accuracy when the model may abstain (``min_score``); calibration (ECE, Brier).

Runs on the predictor side, so the metrics are computed with numpy alone (no scikit-learn).
They follow scikit-learn's conventions so the numbers match what users know: a score whose
denominator is zero counts as 0, and macro averages run over the labels that occur in the
true or the predicted labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import LabelledTexts
from .errors import DataError, RnnonnxError

if TYPE_CHECKING:
    from .multilabel import MultiLabelEvaluation

SHOWN_UNKNOWN = 10


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]``: rows are true classes, columns predicted ones."""
    flat = np.asarray(true, dtype=np.int64) * n_classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division where 0/0 is 0 (scikit-learn's ``zero_division=0``)."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores(matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)
    present = (support + predicted) > 0
    total = int(matrix.sum())
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
    }


@dataclass
class Evaluation:
    """What ``rnnonnx evaluate`` reports: the scores, and the rows it had to leave out.

    With ``min_score``, rows whose top probability is below it get no label (the model
    abstains): ``abstained`` counts them per true label, and ``confusion`` (hence accuracy,
    macro-F1, per-class scores) holds the answered rows only. ``proba`` and ``true`` are the
    probabilities and true label indices of every row the model knows, for calibration and the
    coverage curve; ``temperature`` and ``training_calibration`` come from the bundle's manifest.
    """

    model: str
    data: str
    labels: list[str]
    rows: int
    confusion: np.ndarray
    unknown: dict[str, int] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    min_score: float | None = None
    abstained: np.ndarray | None = None
    proba: np.ndarray | None = None
    true: np.ndarray | None = None
    temperature: float | None = None
    training_calibration: dict[str, Any] | None = None

    @property
    def evaluated(self) -> int:
        """Rows that entered the metrics (those whose label the model knows), answered or not."""
        return int(self.confusion.sum()) + self.abstentions

    @property
    def answered(self) -> int:
        """Rows the model gave a label (all evaluated rows, without ``min_score``)."""
        return int(self.confusion.sum())

    @property
    def abstentions(self) -> int:
        """Rows below ``min_score`` (0 without one)."""
        return int(self.abstained.sum()) if self.abstained is not None else 0

    @property
    def coverage(self) -> float:
        """Share of evaluated rows the model answered."""
        return self.answered / self.evaluated if self.evaluated else 0.0

    def calibration(self) -> dict[str, Any] | None:
        """ECE (``calibration.BINS`` equal-width bins) and Brier score of the probabilities over
        every evaluated row, answered or not; ``None`` without probabilities."""
        if self.proba is None or self.true is None:
            return None
        from . import calibration

        return {
            "ece": calibration.ece(self.proba, self.true),
            "brier": calibration.brier(self.proba, self.true),
            "ece_bins": calibration.BINS,
            "temperature": self.temperature,
            "at_training": self.training_calibration,
        }

    @property
    def excluded(self) -> int:
        """Rows left out because the model does not know their label."""
        return sum(self.unknown.values())

    def scores(self) -> dict[str, Any]:
        """See :func:`scores`."""
        return scores(self.confusion)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: plain JSON types, per-class scores keyed by label."""
        s = self.scores()
        return {
            "model": self.model,
            "data": self.data,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "excluded": self.excluded,
            "unknown_labels": dict(self.unknown),
            "accuracy": s["accuracy"],
            "macro_f1": s["macro_f1"],
            "macro_precision": s["macro_precision"],
            "macro_recall": s["macro_recall"],
            "per_class": {
                name: {"precision": s["precision"][i], "recall": s["recall"][i], "f1": s["f1"][i], "support": s["support"][i]}
                for i, name in enumerate(self.labels)
            },
            "confusion_matrix": {
                "labels": self.labels,
                "rows": "true",
                "columns": "predicted",
                "counts": self.confusion.tolist(),
            },
            "abstention": None
            if self.min_score is None
            else {
                "min_score": self.min_score,
                "answered": self.answered,
                "abstained": self.abstentions,
                "coverage": self.coverage,
                "abstained_per_class": {name: int(n) for name, n in zip(self.labels, self.abstained)},
                "scores_cover": "answered rows",
            },
            "calibration": self.calibration(),
            "plots": self.plots,
        }

    def to_json(self) -> str:
        """One JSON document (UTF-8 labels kept as they are)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def unknown_note(self) -> str | None:
        """One line naming the labels the model does not know, or None when every row counted."""
        if not self.unknown:
            return None
        ranked = sorted(self.unknown.items(), key=lambda item: (-item[1], item[0]))
        shown = ", ".join(f"{name!r} ({count})" for name, count in ranked[:SHOWN_UNKNOWN])
        more = f" and {len(ranked) - SHOWN_UNKNOWN} more" if len(ranked) > SHOWN_UNKNOWN else ""
        return (
            f"{self.excluded} of {self.rows} row(s) excluded from the metrics: labels the model does not know: "
            f"{shown}{more} (it knows {', '.join(repr(n) for n in self.labels)})"
        )

    def table(self) -> str:
        """A readable report: headline scores, per-class table, confusion matrix."""
        s = self.scores()
        name_width = max([9] + [len(n) for n in self.labels])
        lines = [
            f"model     {self.model}",
            f"data      {self.data}: {self.evaluated} row(s) evaluated",
        ]
        note = self.unknown_note()
        if note:
            lines.append(f"excluded  {note}")
        answered = ""
        if self.min_score is not None:
            lines.append(
                f"min-score {self.min_score:g}: {self.answered} of {self.evaluated} row(s) answered "
                f"(coverage {self.coverage:.4f}), {self.abstentions} abstained; the scores below are on the answered rows"
            )
            answered = "  (answered rows)"
        lines += [
            f"accuracy  {s['accuracy']:.4f}{answered}",
            f"macro-F1  {s['macro_f1']:.4f}{answered}",
        ]
        lines += self._calibration_lines()
        lines += [
            "",
            f"{'label':<{name_width}}  precision  recall  f1      support",
        ]
        for i, name in enumerate(self.labels):
            lines.append(
                f"{name:<{name_width}}  {s['precision'][i]:<9.4f}  {s['recall'][i]:<6.4f}  {s['f1'][i]:<6.4f}  {s['support'][i]}"
            )
        lines.append(
            f"{'macro avg':<{name_width}}  {s['macro_precision']:<9.4f}  {s['macro_recall']:<6.4f}  "
            f"{s['macro_f1']:<6.4f}  {self.answered}"
        )
        lines += ["", "confusion matrix (rows: true label, columns: predicted label)"]
        columns = self.labels + (["(none)"] if self.abstained is not None else [])
        counts = self.confusion if self.abstained is None else np.column_stack([self.confusion, self.abstained])
        cell = max([len(n) for n in columns] + [len(str(int(counts.max(initial=0))))])
        lines.append(" " * name_width + "  " + "  ".join(f"{n:>{cell}}" for n in columns))
        for i, name in enumerate(self.labels):
            lines.append(f"{name:<{name_width}}  " + "  ".join(f"{int(c):>{cell}}" for c in counts[i]))
        if self.plots:
            lines += ["", *(f"plot written: {p}" for p in self.plots)]
        return "\n".join(lines)

    def _calibration_lines(self) -> list[str]:
        """ECE and Brier here, the temperature, and the before/after figures recorded at training."""
        c = self.calibration()
        if c is None:
            return []
        pad = " " * len("calibration  ")
        line = f"calibration  ECE {c['ece']:.4f} ({c['ece_bins']} equal-width bins), Brier {c['brier']:.4f} (sum over labels)"
        if self.temperature is not None:
            line += f"; temperature {self.temperature:.3f}" if self.temperature != 1.0 else "; not calibrated (temperature 1)"
        lines = [line]
        record = self.training_calibration or {}
        for part in ("test", "validation"):
            if part in record:
                before, after = record[part]["before"], record[part]["after"]
                lines.append(
                    f"{pad}at training, {record[part]['rows']} {part} rows: ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
                    f"Brier {before['brier']:.4f} -> {after['brier']:.4f} (before -> after temperature scaling)"
                )
                break
        return lines


def evaluate_predictions(
    model: str, data: str, labels: Sequence[str], true: Sequence[str], proba: np.ndarray, min_score: float | None = None
) -> Evaluation:
    """Compare true label names with the argmax of ``proba`` (columns in ``labels`` order).

    Rows whose true label is not among ``labels`` are counted and left out; if no row is left,
    that is an error, since the file and the model evidently disagree on what the labels are.
    With ``min_score``, rows whose top probability is below it are abstentions (see :class:`Evaluation`).
    """
    if min_score is not None and (
        isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0.0 <= min_score <= 1.0
    ):
        raise RnnonnxError(f"min_score must be a probability between 0 and 1, not {min_score!r}")
    index = {name: i for i, name in enumerate(labels)}
    unknown: dict[str, int] = {}
    known_rows, known_true = [], []
    for row, name in enumerate(true):
        if name in index:
            known_rows.append(row)
            known_true.append(index[name])
        else:
            unknown[name] = unknown.get(name, 0) + 1
    if not known_rows:
        found = ", ".join(repr(n) for n in sorted(unknown)[:SHOWN_UNKNOWN]) + (" ..." if len(unknown) > SHOWN_UNKNOWN else "")
        raise DataError(
            f"{data}: no row has a label the model knows ({', '.join(repr(n) for n in labels)}); "
            f"the file has {found} (wrong --label-col?)"
        )
    known_proba = np.asarray(proba)[known_rows]
    known_true = np.asarray(known_true, dtype=np.int64)
    predicted = known_proba.argmax(axis=1)
    answered = np.ones(len(known_true), dtype=bool) if min_score is None else known_proba.max(axis=1) >= min_score
    matrix = confusion_matrix(known_true[answered], predicted[answered], len(labels))
    abstained = None if min_score is None else np.bincount(known_true[~answered], minlength=len(labels))
    return Evaluation(
        model,
        data,
        list(labels),
        len(true),
        matrix,
        unknown,
        min_score=min_score,
        abstained=abstained,
        proba=known_proba,
        true=known_true,
    )


def coverage_curve(proba: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, coverage, accuracy)``: for each distinct top probability taken as
    ``min_score``, the share of rows answered and the accuracy on them (highest threshold first)."""
    proba = np.asarray(proba, dtype=np.float64)
    top = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(true)
    order = np.argsort(-top, kind="stable")
    top, correct = top[order], correct[order]
    last = np.r_[top[1:] != top[:-1], True]  # answer every row tied at a threshold
    answered = np.arange(1, len(top) + 1)[last]
    return top[last], answered / len(top), np.cumsum(correct)[last] / answered


def _calibration_record(manifest: dict[str, Any]) -> tuple[float | None, dict[str, Any] | None]:
    """The bundle's temperature (1 when it predates calibration) and the training-time
    before/after record, or ``None`` where the manifest does not hold a usable one."""
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    temperature = model.get("temperature", 1.0)
    temperature = float(temperature) if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) else None
    training = manifest.get("training") if isinstance(manifest.get("training"), dict) else {}
    record = training.get("calibration")
    try:
        for part in ("validation", "test"):
            if part in record:
                int(record[part]["rows"])
                for when in ("before", "after"):
                    float(record[part][when]["ece"]), float(record[part][when]["brier"])
    except (KeyError, TypeError, ValueError):
        record = None
    return temperature, record


def evaluate(
    target: str | Path,
    data: LabelledTexts | None = None,
    run_dir: str | Path | None = None,
    plot_dir: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    min_score: float | None = None,
    precision: str = "fp32",
) -> "Evaluation | MultiLabelEvaluation":
    """Score a bundle (or a run directory's bundle) on ``data``; optionally write PNG figures.
    A multi-label bundle gets a :class:`rnnonnx.multilabel.MultiLabelEvaluation` (its data's
    label sets, or single labels as sets of one); ``min_score`` then replaces every threshold.

    A run is known when ``target`` is a run directory or ``run_dir`` names one. Without
    ``data`` the bundle is scored on that run's test rows; with no run either, data is required.
    ``plot_dir`` gets the confusion matrix, the reliability diagram and the coverage/accuracy
    curve, plus the training curves when a run is known. ``min_score``: see :class:`Evaluation`.
    ``precision="int8"`` scores the bundle's int8 model (``export --quantize int8``).
    """
    from .predictor import Predictor
    from .run import HELD_OUT, find_bundle, is_run_dir, read_held_out, read_metrics

    bundle, own_run = find_bundle(target)
    if run_dir is not None and not Path(run_dir).is_dir():
        raise RnnonnxError(f"{run_dir}: no such run directory")
    if run_dir is not None and not is_run_dir(run_dir):
        raise RnnonnxError(f"{run_dir}: not a run directory (no config.json written by 'rnnonnx train')")
    run = Path(run_dir) if run_dir is not None else own_run
    metrics = read_metrics(run) if run is not None and plot_dir is not None else None
    if data is not None:
        texts, source = data.texts, data.source
        labels = data.label_sets if data.label_sets is not None else data.labels
    elif run is not None:
        texts, labels = read_held_out(run, "test")
        source = str(run / HELD_OUT["test"])
        if not texts:
            raise DataError(f"{source}: the run kept no test rows (too little data, or --test 0); pass --data FILE")
    else:
        raise DataError(
            f"{bundle}: a bundle has no test rows of its own; pass --data FILE (or --run RUN_DIR for the run's test rows)"
        )
    predictor = Predictor(bundle, device=device, threads=threads, precision=precision)
    name = str(bundle) + (f" ({precision})" if precision != "fp32" else "")
    if predictor.task == "multi-label":
        from .multilabel import evaluate_sets

        if plot_dir is not None:
            raise RnnonnxError("--plot draws multi-class figures; a multi-label bundle has none yet")
        proba = predictor.predict_proba(texts)
        return evaluate_sets(name, source, predictor.labels, labels, proba, predictor.thresholds, min_score)
    if any(not isinstance(label, str) for label in labels):
        raise DataError(f"{source}: texts with several labels (or none), but {bundle} is a multi-class model")
    result = evaluate_predictions(name, source, predictor.labels, labels, predictor.predict_proba(texts), min_score)
    result.temperature, result.training_calibration = _calibration_record(predictor.bundle.manifest)
    if plot_dir is not None:
        from .plots import write_plots

        result.plots = [str(p) for p in write_plots(plot_dir, result, metrics)]
    return result

"""PNG figures for ``rnnonnx evaluate --plot``: the confusion matrix, the reliability diagram,
the coverage/accuracy curve and the training curves.

matplotlib is an optional extra (``rnnonnx[plot]``), imported only here and only when a plot
is asked for. Figures are drawn on the Agg canvas without ``pyplot``, so no display and no
global figure state are involved (the Agg canvas is attached to each figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import RnnonnxError
from .files import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .evaluation import Evaluation
    from .run import Metrics

PLOT_HINT = 'plotting needs matplotlib: pip install "rnnonnx[plot]"'
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"
RELIABILITY_PNG = "reliability.png"
COVERAGE_PNG = "coverage_accuracy.png"


def _figure(width: float, height: float) -> "Figure":
    """A blank Agg-backed figure, or a clear error when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RnnonnxError(PLOT_HINT) from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: "Figure", path: Path) -> Path:
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path


def plot_confusion(evaluation: "Evaluation", path: str | Path) -> Path:
    """Counts per (true, predicted) cell, shaded by the share of the true label's rows."""
    labels, counts = evaluation.labels, evaluation.confusion
    size = min(4 + 0.6 * len(labels), 16)
    figure = _figure(size + 1.2, size)
    axes = figure.add_subplot()
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true label's rows")
    axes.set_xticks(
        range(len(labels)),
        labels,
        rotation=45 if max(map(len, labels)) > 6 else 0,
        ha="right" if max(map(len, labels)) > 6 else "center",
    )
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if len(labels) <= 30:
        for (i, j), count in np.ndenumerate(counts):
            axes.text(j, i, str(int(count)), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    s = evaluation.scores()
    axes.set_title(f"{evaluation.evaluated} rows: accuracy {s['accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f}")
    return _save(figure, Path(path))


def plot_curves(metrics: "Metrics", path: str | Path) -> Path:
    """Loss and accuracy per epoch (train and validation), the kept epoch, and the baseline if any;
    for an ensemble, every member's curves and the ensemble's validation score."""
    members = [(m.epochs, m.best_epoch) for m in metrics.members] or [(metrics.epochs, metrics.best_epoch)]
    figure = _figure(10, 4)
    loss_axes, acc_axes = figure.subplots(1, 2)
    baseline = metrics.baseline or {}
    longest = max((history for history, _ in members), key=len)
    epochs = [h["epoch"] for h in longest]
    for axes, key, title in ((loss_axes, "loss", "cross-entropy loss"), (acc_axes, "accuracy", "accuracy")):
        for k, (history, best_epoch) in enumerate(members):
            name = f"member {k + 1} " if len(members) > 1 else ""
            steps = [h["epoch"] for h in history]
            (train_line,) = axes.plot(steps, [h[f"train_{key}"] for h in history], marker="o", label=f"{name}train")
            axes.plot(
                steps,
                [h[f"val_{key}"] for h in history],
                marker="s",
                linestyle="--",
                color=train_line.get_color(),
                label=f"{name}validation",
            )
            if best_epoch:
                axes.axvline(best_epoch, color=train_line.get_color(), linestyle=":", label=f"{name}kept epoch {best_epoch}")
        if len(members) > 1:
            axes.axhline(
                getattr(metrics, f"val_{key}"), color="black", linestyle="-.", label=f"ensemble of {len(members)} (validation)"
            )
        if f"val_{key}" in baseline:
            axes.axhline(baseline[f"val_{key}"], color="gray", linestyle="--", label="TF-IDF baseline (validation)")
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
        axes.grid(alpha=0.3)
        axes.legend(fontsize="x-small")
    if metrics.validation_is_train:
        figure.suptitle("validation rows are the training rows (too little data to hold any out)", color="darkred")
    return _save(figure, Path(path))


def plot_reliability(evaluation: "Evaluation", path: str | Path) -> Path:
    """The reliability diagram: in each of the 15 bins of top probability, the accuracy (bar) and
    the mean top probability (red mark), which a calibrated model keeps level; rows per bin below."""
    from .calibration import reliability

    table = reliability(evaluation.proba, evaluation.true)
    figure = _figure(6, 6)
    axes, counts_axes = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    width = table.edges[1] - table.edges[0]
    filled = table.counts > 0
    centers = table.edges[:-1] + width / 2
    axes.bar(
        centers[filled], table.accuracy[filled], width=width * 0.95, color="tab:blue", alpha=0.8, label="accuracy in the bin"
    )
    axes.plot(
        centers[filled],
        table.confidence[filled],
        linestyle="none",
        marker="_",
        markersize=14,
        markeredgewidth=2,
        color="tab:red",
        label="mean top probability in the bin",
    )
    axes.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    calibration = evaluation.calibration() or {}
    title = (
        f"{evaluation.evaluated} rows: ECE {calibration.get('ece', float('nan')):.4f}, "
        f"Brier {calibration.get('brier', float('nan')):.4f}"
    )
    if evaluation.temperature not in (None, 1.0):
        title += f" (temperature {evaluation.temperature:.3f})"
    axes.set_title(title)
    axes.legend(fontsize="small", loc="upper left")
    axes.grid(alpha=0.3)
    counts_axes.bar(centers, table.counts, width=width * 0.95, color="gray")
    counts_axes.set_xlim(0, 1)
    counts_axes.set_xlabel(f"top probability ({len(table.counts)} equal-width bins)")
    counts_axes.set_ylabel("rows")
    return _save(figure, Path(path))


def plot_coverage(evaluation: "Evaluation", path: str | Path) -> Path:
    """Accuracy on the answered rows against coverage, as ``--min-score`` sweeps the top
    probabilities; the chosen ``--min-score``, if any, marked."""
    from .evaluation import coverage_curve

    thresholds, coverage, accuracy = coverage_curve(evaluation.proba, evaluation.true)
    figure = _figure(7, 5)
    axes = figure.add_subplot()
    axes.plot(coverage, accuracy, color="tab:blue", drawstyle="steps-post", label="accuracy on the answered rows")
    for wanted in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99):
        k = int(np.searchsorted(-thresholds, -wanted, side="right")) - 1
        if 0 <= k < len(thresholds):
            axes.annotate(
                f"{wanted:g}",
                (coverage[k], accuracy[k]),
                textcoords="offset points",
                xytext=(4, -12),
                fontsize="x-small",
                color="gray",
            )
            axes.plot(coverage[k], accuracy[k], marker=".", color="gray")
    if evaluation.min_score is not None:
        axes.plot(
            evaluation.coverage,
            evaluation.scores()["accuracy"] if evaluation.answered else np.nan,
            marker="o",
            color="tab:red",
            linestyle="none",
            label=f"--min-score {evaluation.min_score:g}",
        )
    axes.set_xlim(0, 1.02)
    axes.set_xlabel("coverage (share of rows answered)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{evaluation.evaluated} rows; grey points: --min-score values")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower left")
    return _save(figure, Path(path))


def write_plots(out_dir: str | Path, evaluation: "Evaluation", metrics: "Metrics | None" = None) -> list[Path]:
    """Write the confusion matrix, the reliability diagram and the coverage/accuracy curve, and
    the training curves when ``metrics`` has a history."""
    out_dir = Path(out_dir)
    try:
        written = [plot_confusion(evaluation, out_dir / CONFUSION_PNG)]
        if evaluation.proba is not None:
            written += [
                plot_reliability(evaluation, out_dir / RELIABILITY_PNG),
                plot_coverage(evaluation, out_dir / COVERAGE_PNG),
            ]
        if metrics is not None:
            written.append(plot_curves(metrics, out_dir / CURVES_PNG))
    except OSError as exc:
        raise RnnonnxError(f"{out_dir}: cannot write plots ({exc.strerror or exc})") from None
    return written

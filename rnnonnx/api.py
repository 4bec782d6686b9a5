"""The Python API: one plain function per command-line verb, each returning a result object.

``rnnonnx train`` is :func:`train`, ``rnnonnx predict`` is :func:`predict` (or :func:`predict_file`
with ``--output``), and so on; the click commands in :mod:`rnnonnx.cli` only parse options, call
these and print what they return. Heavy libraries load inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch import BatchStats
    from .benchmark_report import BenchReport
    from .evaluation import Evaluation
    from .explanation import Explanation
    from .predictor import Prediction, Predictor
    from .run import Metrics
    from .verification import Verification

PathLike = str | os.PathLike


def train(
    out_dir: PathLike,
    data: PathLike | None = None,
    *,
    format: str | None = None,
    text_col: str = "text",
    label_col: str = "label",
    label_sep: str | None = None,
    multi_label: bool = False,
    progress: bool = False,
    test_file: PathLike | None = None,
    **options: Any,
) -> "Metrics":
    """``rnnonnx train``: fit a classifier on ``data`` (CSV/TSV/JSONL/fastText; ``None``: the built-in
    dataset) and write the run directory ``out_dir``. ``options`` are :class:`TrainConfig` fields
    (``arch="gru"``, ``members=1``, ``vectors="wiki.vec"``, ``autotune="10m"``, ...); with
    ``autotune``, the searched options given here are kept as given. The model is multi-label when
    a text has other than one label (a JSON list, ``label_sep`` in the label cell, a fastText line)
    or with ``multi_label``. ``test_file``: labelled texts (same columns, format from its extension)
    scored at the end instead of a held-out test split, whose fraction ``test`` then defaults to 0.
    Needs the ``[train]`` extra."""
    from .config import TrainConfig
    from .data import read_file
    from .errors import RnnonnxError
    from .training import train_run

    if test_file is not None:
        options.setdefault("test", 0.0)
    config = TrainConfig.from_options(options)
    if data is None and (label_sep is not None or multi_label):
        raise RnnonnxError("--label-sep and --multi-label apply to --data files, not the built-in dataset")
    texts = read_file(data, format, text_col, label_col, label_sep, multi_label) if data is not None else None
    test_data = read_file(test_file, None, text_col, label_col, label_sep, multi_label) if test_file is not None else None
    return train_run(config, out_dir, texts, progress=progress, test_data=test_data, fixed=set(options))


def export(
    run_dir: PathLike,
    out_dir: PathLike | None = None,
    *,
    quantize: str | None = None,
    tolerance: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``rnnonnx export``: turn a run into a bundle (default ``RUN_DIR/bundle``) after proving
    ONNX Runtime agrees with PyTorch (max |difference| of probabilities within ``tolerance``,
    default 1e-5); returns the bundle's path. Needs the ``[train]`` extra."""
    from .exporting import export_run

    return export_run(run_dir, out_dir, log=log, quantize=quantize, tolerance=tolerance)


def load(bundle: PathLike, **options: Any) -> "Predictor":
    """Open a bundle for prediction; ``options`` go to :class:`rnnonnx.Predictor` (``device``,
    ``threads``, ``precision``, ``graph``, ``batch_size``)."""
    from .predictor import Predictor

    return Predictor(bundle, **options)


def predict(
    bundle: "PathLike | Predictor",
    texts: Sequence[str] | Iterable[str],
    *,
    top_k: int | None = None,
    min_score: float | None = None,
    bucketing: bool = True,
    **options: Any,
) -> list["Prediction"]:
    """``rnnonnx predict BUNDLE TEXT...``: one :class:`rnnonnx.Prediction` per text. ``bundle`` is
    a path (opened with ``options``, as :func:`load`) or an open predictor. ``bucketing=False``
    batches texts in input order instead of by length (slower; there to measure what grouping saves)."""
    predictor = _predictor(bundle, options)
    if bucketing:
        return predictor.predict(texts, top_k=top_k, min_score=min_score)
    from .batch import predict_proba
    from .predictor import predictions_from_proba

    proba = predict_proba(predictor, list(texts), bucketing=False)
    return predictions_from_proba(proba, predictor.labels, top_k, min_score, predictor.thresholds)


def predict_file(
    bundle: "PathLike | Predictor",
    input_path: PathLike,
    output_path: PathLike,
    *,
    format: str | None = None,
    text_col: str = "text",
    bucketing: bool = True,
    progress: bool = False,
    min_score: float | None = None,
    label_sep: str = ",",
    **options: Any,
) -> "BatchStats":
    """``rnnonnx predict BUNDLE --input FILE --output FILE``: stream a file of any size through the
    model, keeping its columns and adding ``label`` and ``score``; the output appears complete or not at all.
    A multi-label bundle's ``label`` is its set (a JSON list, or joined by ``label_sep`` in CSV/TSV)."""
    from .batch import predict_file as stream

    return stream(
        _predictor(bundle, options),
        input_path,
        output_path,
        format,
        text_col,
        bucketing=bucketing,
        progress=progress,
        min_score=min_score,
        label_sep=label_sep,
    )


def evaluate(
    target: PathLike,
    data: PathLike | None = None,
    *,
    format: str | None = None,
    text_col: str = "text",
    label_col: str = "label",
    label_sep: str | None = None,
    multi_label: bool = False,
    run_dir: PathLike | None = None,
    plot_dir: PathLike | None = None,
    device: str = "auto",
    threads: int | None = None,
    min_score: float | None = None,
    precision: str = "fp32",
) -> "Evaluation":
    """``rnnonnx evaluate``: score a bundle (or a run's bundle) on labelled texts (default: the
    run's test rows); accuracy, macro-F1, per-class scores, confusion matrix, calibration (ECE,
    Brier), optional PNG plots. ``min_score``: abstain below it, and report coverage.
    ``precision="int8"``: the bundle's int8 model."""
    from .data import read_file, warn
    from .evaluation import evaluate as score

    texts = None
    if data is not None:
        texts = read_file(data, format, text_col, label_col, label_sep, multi_label)
        for message in texts.warnings:
            warn(message)
    return score(
        target,
        texts,
        run_dir=run_dir,
        plot_dir=plot_dir,
        device=device,
        threads=threads,
        min_score=min_score,
        precision=precision,
    )


def bench(bundle: PathLike, log: Callable[[str], None] | None = None, **options: Any) -> "BenchReport":
    """``rnnonnx bench``: time ONNX Runtime (fp32, int8) against PyTorch eager in interleaved rounds,
    and the cold start; ``options`` are :class:`rnnonnx.benchmark.BenchOptions` fields (``run``,
    ``threads`` (one count or a list), ``rounds``, ``seconds``, ...)."""
    from .benchmark import BenchOptions, run_bench

    return run_bench(bundle, BenchOptions(**options), log=log)


def serve(bundle: PathLike, **options: Any) -> None:
    """``rnnonnx serve``: load and check ``bundle``, then answer HTTP requests (micro-batched) until
    SIGTERM or Ctrl-C; ``options`` are :class:`rnnonnx.server.ServeSettings` fields (``host``,
    ``port``, ``workers``, ``max_batch``, ...). Needs the ``[serve]`` extra."""
    from .server import serve as run_server

    run_server(str(bundle), **options)


def verify(bundle: PathLike, *, device: str = "cpu") -> "Verification":
    """``rnnonnx verify BUNDLE``: every file's size and sha256, the consistency of labels,
    tokenizer and manifest, every model file loaded in ONNX Runtime, and its probabilities on
    the golden examples stored at export. Problems are lines of the result's ``problems``
    (``result.ok`` when there are none), not exceptions, so a deploy pipeline sees them all."""
    from .verification import verify_bundle

    return verify_bundle(bundle, device=device)


def explain(bundle: "PathLike | Predictor", text: str, *, label: str | None = None, **options: Any) -> "Explanation":
    """``rnnonnx explain BUNDLE TEXT``: each token's contribution to the predicted label (or to
    ``label``) by occlusion, on the bundle's ids graph (ONNX Runtime only, no torch). ``bundle``
    is a path (opened with ``options``, as :func:`load`) or an open predictor."""
    return _predictor(bundle, options).explain(text, label)


def _predictor(bundle: "PathLike | Predictor", options: dict[str, Any]) -> "Predictor":
    from .predictor import Predictor

    if isinstance(bundle, Predictor):
        if options:
            raise TypeError(f"options {sorted(options)} apply when opening a bundle, not to an open Predictor")
        return bundle
    return Predictor(bundle, **options)

"""Score a Spark DataFrame column with a bundle (extra ``[spark]``).

Built on Spark's own ``pyspark.ml.functions.predict_batch_udf``: each Python worker loads one
:class:`~rnnonnx.predictor.Predictor` per bundle and options (cached for the worker's life) and
scores Arrow batches of texts with it; the predictor gets one thread per task by default,
because Spark already runs one task per core and more threads would oversubscribe them.

Bundles reach the executors either by a path they can all read (shared storage, or the same path
on every node) or shipped by Spark: :func:`add_bundle` sends a local bundle directory (as a zip,
through ``SparkContext.addArchive``), and a directory on HDFS or S3 can be added with
``SparkContext.addFile(url, recursive=True)``; either way :func:`predict_udf` takes the bundle's
name and finds the copy with ``SparkFiles.get`` wherever it runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RnnonnxError
from .predictor import GRAPHS, Predictor, predictions_from_proba

INSTALL_HINT = 'pip install "rnnonnx[spark]"'
try:
    import pandas  # noqa: F401  (predict_batch_udf moves batches as pandas over Arrow)
    import pyarrow  # noqa: F401
    import pyspark.sql.functions as F
    from pyspark import SparkFiles
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import types as T
except ImportError as exc:
    raise RnnonnxError(f"rnnonnx.spark needs pyspark, pandas and pyarrow ({exc}); install them with: {INSTALL_HINT}") from None
# Rows handed to one Predictor call: it groups them by length, so bigger batches waste less on
# padding; Spark's Arrow batches (spark.sql.execution.arrow.maxRecordsPerBatch, 10,000 by
# default) cap it.
DEFAULT_BATCH_SIZE = 4096

_PREDICTORS: dict[tuple, Predictor] = {}
_SHIPPED: dict[tuple[str, str], Path] = {}
_ARCHIVES: str | None = None
_LOCK = threading.Lock()


def resolve_bundle(bundle: str | os.PathLike) -> str:
    """The local directory of ``bundle``: for a bare name, the copy shipped under that name
    (:func:`add_bundle`, ``SparkContext.addFile``) in this node's SparkFiles directory; else the
    path itself when it is a directory here (shared storage), else a copy shipped under its last
    component. Runs on the driver and on every executor."""
    path = os.fspath(bundle)
    name = os.path.basename(os.path.normpath(path))
    shipped = _shipped(name)
    if shipped and name == path.rstrip("/" + os.sep):
        return shipped
    if os.path.isdir(path):
        return path
    if shipped:
        return shipped
    raise RnnonnxError(
        f"{path}: no bundle directory at this path, and none shipped under the name {name!r} "
        "(use a path every executor can read, or rnnonnx.spark.add_bundle(spark, path) first)"
    )


def _shipped(name: str) -> str | None:
    """The SparkFiles copy of a shipped directory, if there is one on this node."""
    try:
        found = SparkFiles.get(name)
    except Exception:  # no SparkContext here: nothing was shipped
        return None
    return found if os.path.isdir(found) else None


def add_bundle(spark: SparkSession, path: str | os.PathLike) -> str:
    """Ship a local bundle directory to every executor and return its name, for
    :func:`predict_udf`; for clusters without storage that every node can read.

    Spark's ``addFile`` takes local directories only in local mode, so the bundle goes as a zip
    through ``SparkContext.addArchive`` (the ``addFile`` of archives), which every node unpacks
    into its SparkFiles directory under the bundle's name. The zip stays in a temporary
    directory until this process exits, since executors that join later fetch it from there.
    """
    from .bundle import Bundle

    source = Bundle(path).path.resolve()
    name = source.name
    context = spark.sparkContext
    key = (context.applicationId, name)
    with _LOCK:
        shipped = _SHIPPED.get(key)
        if shipped is not None:
            if shipped != source:
                raise RnnonnxError(f"{source}: a bundle named {name!r} was already shipped from {shipped}; rename one of them")
            return name
        archive = Path(_archive_dir()) / f"{name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as packed:
            for item in sorted(source.iterdir()):
                if item.is_file():
                    packed.write(item, item.name)
        context.addArchive(f"{archive.as_uri()}#{name}")
        _SHIPPED[key] = source
    return name


def _archive_dir() -> str:
    """One temporary directory per process for shipped bundle zips, removed at exit."""
    global _ARCHIVES
    if _ARCHIVES is None:
        _ARCHIVES = tempfile.mkdtemp(prefix="rnnonnx-spark-")
        atexit.register(shutil.rmtree, _ARCHIVES, ignore_errors=True)
    return _ARCHIVES


def get_predictor(bundle: str | os.PathLike, threads: int | None = 1, graph: str = "auto") -> Predictor:
    """This process's Predictor for a bundle and options, loaded once and reused by every batch
    and task the worker runs (Spark reuses Python workers), so a bundle is read and checked once
    per worker rather than once per batch."""
    path = resolve_bundle(bundle)
    key = (os.path.realpath(path), threads, graph)
    with _LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is None:
            predictor = Predictor(path, device="cpu", threads=threads, graph=graph)
            _PREDICTORS[key] = predictor
        return predictor


def _texts(column: np.ndarray) -> list[str]:
    """The batch as strings; nulls become "" so the batch still runs (their result is nulled)."""
    texts = []
    for value in column:
        if value is None:
            texts.append("")
        elif isinstance(value, str):
            texts.append(value)
        else:
            raise RnnonnxError(
                f"rnnonnx.spark: the text column must hold strings, not {type(value).__name__} "
                "(cast it with .cast('string') if that is meant)"
            )
    return texts


def _make_predict_fn(
    bundle: str, threads: int | None, graph: str, top_k: int | None, min_score: float | None = None
) -> Callable[[], Callable]:
    """What ``predict_batch_udf`` runs once per worker: fetch the cached Predictor and return
    the batch function (numpy strings in, one numpy column per struct field out). For a
    multi-label bundle, ``label_set`` holds the labels at or above their threshold (or
    ``min_score``) best first, padded with nulls to one slot per label (a fixed width)."""

    def make() -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        predictor = get_predictor(bundle, threads, graph)
        labels = np.array(predictor.labels, dtype=object)

        def predict(texts: np.ndarray) -> dict[str, np.ndarray]:
            proba = predictor.predict_proba(_texts(texts))
            best = proba.argmax(axis=1)
            out = {"label": labels[best], "score": proba[np.arange(len(proba)), best], "probabilities": proba}
            if predictor.thresholds is not None:
                limits = np.float32(predictor.thresholds if min_score is None else [min_score] * len(labels))
                order = np.argsort(-proba, axis=1, kind="stable")
                inside = np.take_along_axis(proba >= limits, order, axis=1)
                out["label_set"] = np.where(inside, labels[order], None)
            if top_k is not None:
                k = proba.shape[1] if top_k == -1 else min(top_k, proba.shape[1])
                # the order predictions_from_proba gives: best first, ties in label order
                top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
                out["top_labels"] = labels[top]
                out["top_scores"] = np.take_along_axis(proba, top, axis=1)
            return out

        return predict

    return make


class PredictUDF:
    """A column function: ``udf("text")`` or ``udf(df.text)`` gives the prediction struct.

    ``labels`` holds the bundle's labels; ``batch_udf`` is the underlying pandas UDF from
    ``predict_batch_udf`` (struct ``label``, ``score``, ``probabilities`` as an array in
    ``labels`` order and, with ``top_k``, arrays ``top_labels`` and ``top_scores``), for callers
    who want the raw arrays or to register it for SQL.
    """

    def __init__(
        self, batch_udf: Any, labels: list[str], top_k: int | None, min_score: float | None, multi_label: bool = False
    ) -> None:
        self.batch_udf = batch_udf
        self.labels = labels
        self.top_k = top_k
        self.min_score = min_score
        self.multi_label = multi_label

    def __call__(self, text: str | Column) -> Column:
        column = F.col(text) if isinstance(text, str) else text
        raw = self.batch_udf(column)
        names = F.array(*[F.lit(name) for name in self.labels])
        probabilities = raw["probabilities"]
        label = raw["label"]
        chosen = None
        if self.multi_label:  # the set (nulls dropped) and its first label, null when empty
            chosen = F.array_compact(raw["label_set"])
            label = F.try_element_at(chosen, F.lit(1))
        elif self.min_score is not None:
            label = F.when(raw["score"] >= F.lit(self.min_score), label)
        fields = [
            label.alias("label"),
            raw["score"].alias("score"),
            F.map_from_arrays(names, probabilities).alias("probabilities"),
        ]
        if chosen is not None:
            fields.append(chosen.alias("labels"))
        if self.top_k is not None:
            # a Python UDF cannot feed a lambda (transform), so zip the two arrays and name the fields by a cast
            top = F.arrays_zip(raw["top_labels"], raw["top_scores"]).cast("array<struct<label:string,score:float>>")
            fields.append(top.alias("top"))
        return F.when(column.isNotNull(), F.struct(*fields))


def predict_udf(
    bundle_path: str | os.PathLike,
    threads: int | None = 1,
    graph: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    top_k: int | None = None,
    min_score: float | None = None,
) -> PredictUDF:
    """A column function scoring texts with a bundle, in the shape of :class:`~rnnonnx.predictor.Prediction`:
    ``df.withColumn("pred", predict_udf(bundle)("text"))`` adds a struct ``label`` (string),
    ``score`` (float), ``probabilities`` (map label -> float) and, with ``top_k``, ``top``
    (array of ``label``/``score`` structs, best first). A null text gives a null prediction. A
    multi-label bundle's struct also has ``labels`` (array of the labels at or above their
    thresholds, best first; ``min_score`` replaces every threshold), and ``label`` is its first.

    ``bundle_path``: a bundle directory every executor can read, or the name :func:`add_bundle`
    returned. ``threads``: the predictor's threads per task (``None``: all cores, which
    oversubscribes an executor running one task per core). ``batch_size``: rows per Predictor
    call. The driver reads the bundle's labels, so it must reach the bundle too.
    """
    if graph not in GRAPHS:
        raise RnnonnxError(f"unknown graph {graph!r}; use one of {', '.join(GRAPHS)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise RnnonnxError(f"threads must be a positive integer or None (all cores), not {threads!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RnnonnxError(f"batch_size must be a positive integer, not {batch_size!r}")
    from .bundle import Bundle

    opened = Bundle(resolve_bundle(bundle_path))
    labels, multi_label = list(opened.labels), opened.task == "multi-label"
    predictions_from_proba(np.zeros((0, len(labels)), dtype=np.float32), labels, top_k, min_score)  # checks top_k and min_score
    fields = [
        T.StructField("label", T.StringType()),
        T.StructField("score", T.FloatType()),
        T.StructField("probabilities", T.ArrayType(T.FloatType())),
    ]
    if top_k is not None:
        fields += [
            T.StructField("top_labels", T.ArrayType(T.StringType())),
            T.StructField("top_scores", T.ArrayType(T.FloatType())),
        ]
    if multi_label:
        fields.append(T.StructField("label_set", T.ArrayType(T.StringType())))
    spec = os.fspath(bundle_path)
    if os.path.isdir(spec) and resolve_bundle(spec) == spec:
        spec = os.path.abspath(spec)  # a relative path would resolve against each executor's own directory
    batch_udf = predict_batch_udf(
        _make_predict_fn(spec, threads, graph, top_k, min_score if multi_label else None),
        return_type=T.StructType(fields),
        batch_size=batch_size,
    )
    return PredictUDF(batch_udf, labels, top_k, None if min_score is None else float(min_score), multi_label)


__all__ = ["predict_udf", "add_bundle", "resolve_bundle", "get_predictor", "PredictUDF"]

"""rnnonnx.spark on a local SparkSession: the same predictions as one process, in order."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnonnx.errors import RnnonnxError

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "exported" / "lstm"
ROWS = 10_000


def _skip_reason() -> str | None:
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        return f"rnnonnx[spark] is not installed ({exc})"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime (java on PATH or JAVA_HOME), which Spark needs"
    return None


needs_spark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


@pytest.fixture(scope="module")
def spark():
    """One small local[2] session for the module: Python workers run this interpreter."""
    from pyspark.sql import SparkSession

    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("rnnonnx-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    if saved is None:
        os.environ.pop("PYSPARK_PYTHON")
    else:
        os.environ["PYSPARK_PYTHON"] = saved


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """10,000 built-in sentences (repeated as needed), with a few edge cases mixed in."""
    from rnnonnx.data import read_builtin

    base = read_builtin().texts
    out = [base[i % len(base)] for i in range(ROWS)]
    out[1], out[2], out[3] = "", "   ", "Ünïcödé — 東京 ✓ \U0001f600"
    return out


@pytest.fixture(scope="module")
def expected(texts) -> np.ndarray:
    """The single-process predictions every Spark route must reproduce."""
    from rnnonnx.predictor import Predictor

    return Predictor(BUNDLE).predict_proba(texts)


def _frame(spark, texts):
    # several partitions, so the order check covers more than one task and worker
    return spark.sparkContext.parallelize(list(enumerate(texts)), 6).toDF("id long, text string")


def _check(rows, texts, expected, labels) -> None:
    """Rows (id, text, pred) in input order, each equal to the single-process prediction."""
    assert [row["id"] for row in rows] == list(range(len(texts)))
    diffs = []
    for row, want in zip(rows, expected):
        pred = row["pred"]
        if texts[row["id"]] is None:
            assert pred is None
            continue
        assert pred["label"] == labels[int(want.argmax())]
        assert list(pred["probabilities"]) == labels
        got = np.array([pred["probabilities"][name] for name in labels])
        diffs.append(np.abs(got - want).max())
        assert pred["score"] == pytest.approx(float(want.max()), abs=1e-6)
    assert max(diffs) <= 1e-6


@needs_spark
@pytest.mark.slow
def test_10000_rows_match_one_process_in_order(spark, texts, expected):
    from pyspark.sql import functions as F

    import rnnonnx.spark

    udf = rnnonnx.spark.predict_udf(str(BUNDLE))
    assert udf.labels == ["neg", "pos"]
    df = _frame(spark, texts).withColumn("pred", udf("text"))
    rows = df.collect()
    _check(rows, texts, expected, udf.labels)
    # a Column works as well as a name, and the struct fields select like any other
    first = _frame(spark, texts[:5]).select("id", udf(F.col("text")).alias("p")).select("id", "p.label", "p.score").collect()
    assert [row["label"] for row in first] == [rows[i]["pred"]["label"] for i in range(5)]
    # the Python workers (reused between jobs) kept one Predictor each, with one ORT thread
    seen = spark.range(0, 4, 1, 4).mapInPandas(_worker_predictors, "pid long, keys array<string>").collect()
    loaded = {row["pid"]: row["keys"] for row in seen if row["keys"]}
    assert loaded and os.getpid() not in loaded
    assert all(keys == [repr((os.path.realpath(BUNDLE), 1, "auto"))] for keys in loaded.values()), loaded


def _worker_predictors(batches):
    """Which Predictors this Python worker holds (run on the executors)."""
    import pandas as pd

    import rnnonnx.spark

    for _ in batches:
        pass
    yield pd.DataFrame({"pid": [os.getpid()], "keys": [[repr(key) for key in rnnonnx.spark._PREDICTORS]]})


@needs_spark
@pytest.mark.slow
def test_bundle_shipped_with_add_bundle(spark, texts, expected, tmp_path, monkeypatch):
    import rnnonnx.spark

    local = tmp_path / "shipped_lstm"
    shutil.copytree(BUNDLE, local)
    name = rnnonnx.spark.add_bundle(spark, local)
    assert name == "shipped_lstm"
    assert rnnonnx.spark.add_bundle(spark, local) == name  # shipping it again is a no-op
    shutil.rmtree(local)  # from here on only the shipped copies exist
    (tmp_path / "cwd" / "shipped_lstm").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")  # a directory of the same name here does not shadow the shipped bundle
    udf = rnnonnx.spark.predict_udf(name)
    rows = _frame(spark, texts).withColumn("pred", udf("text")).collect()
    _check(rows, texts, expected, udf.labels)
    other = tmp_path / "elsewhere" / "shipped_lstm"
    shutil.copytree(BUNDLE, other)
    with pytest.raises(RnnonnxError, match="already shipped"):
        rnnonnx.spark.add_bundle(spark, other)


@needs_spark
@pytest.mark.slow  # the shared session takes seconds to start
def test_bundle_directory_shipped_with_add_file(spark, texts, expected, tmp_path):
    """A bundle directory added with SparkContext.addFile (from HDFS or S3 on a cluster; a local
    directory is accepted in local mode) is found by name through SparkFiles."""
    import rnnonnx.spark

    local = tmp_path / "added_lstm"
    shutil.copytree(BUNDLE, local)
    spark.sparkContext.addFile(str(local), recursive=True)
    udf = rnnonnx.spark.predict_udf("added_lstm")
    rows = _frame(spark, texts[:1000]).withColumn("pred", udf("text")).collect()
    _check(rows, texts[:1000], expected[:1000], udf.labels)


@needs_spark
@pytest.mark.slow
def test_null_texts_give_null_predictions(spark, texts, expected):
    import rnnonnx.spark

    with_nulls = [None if i % 7 == 3 else t for i, t in enumerate(texts)]
    udf = rnnonnx.spark.predict_udf(str(BUNDLE), graph="ids")
    rows = _frame(spark, with_nulls).withColumn("pred", udf("text")).collect()
    assert sum(row["pred"] is None for row in rows) == sum(t is None for t in with_nulls) > 0
    _check(rows, with_nulls, expected, udf.labels)


@needs_spark
@pytest.mark.slow  # the shared session takes seconds to start
def test_top_k_and_min_score_match_the_python_shape(spark, texts, capsys):
    import rnnonnx.spark
    from rnnonnx.predictor import Predictor

    sample = texts[:300]
    want = [p.to_dict() for p in Predictor(BUNDLE).predict(sample, top_k=-1, min_score=0.9)]
    udf = rnnonnx.spark.predict_udf(str(BUNDLE), top_k=-1, min_score=0.9)
    df = _frame(spark, sample).withColumn("pred", udf("text"))
    df.explain()
    plan = capsys.readouterr().out
    assert plan.count("ArrowEvalPython") == 1 and plan.count("predict(text") == 1, plan  # each field reads one evaluation
    rows = df.collect()
    got = [row["pred"].asDict(recursive=True) for row in rows]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert any(w["label"] is None for w in want) and any(w["label"] is not None for w in want)
    assert [[t["label"] for t in g["top"]] for g in got] == [[t["label"] for t in w["top"]] for w in want]
    assert max(abs(a["score"] - b["score"]) for g, w in zip(got, want) for a, b in zip(g["top"], w["top"])) <= 1e-6
    one = _frame(spark, sample[:3]).withColumn("pred", rnnonnx.spark.predict_udf(str(BUNDLE), top_k=1)("text")).collect()
    assert all(len(row["pred"]["top"]) == 1 for row in one)


@needs_spark
@pytest.mark.slow  # the shared session takes seconds to start
def test_non_string_column_fails_with_a_clear_message(spark):
    import rnnonnx.spark

    df = spark.createDataFrame([(1,), (2,)], "text long")
    with pytest.raises(Exception, match="the text column must hold strings, not int"):
        df.withColumn("pred", rnnonnx.spark.predict_udf(str(BUNDLE))("text")).collect()


@needs_spark
@pytest.mark.slow  # the shared session takes seconds to start
def test_bad_arguments_are_one_line_errors(spark, tmp_path):
    import rnnonnx.spark

    with pytest.raises(RnnonnxError, match="none shipped under the name 'missing_bundle'"):
        rnnonnx.spark.predict_udf(str(tmp_path / "missing_bundle"))
    with pytest.raises(RnnonnxError, match="top_k"):
        rnnonnx.spark.predict_udf(str(BUNDLE), top_k=0)
    with pytest.raises(RnnonnxError, match="min_score"):
        rnnonnx.spark.predict_udf(str(BUNDLE), min_score=2)
    with pytest.raises(RnnonnxError, match="threads"):
        rnnonnx.spark.predict_udf(str(BUNDLE), threads=0)
    with pytest.raises(RnnonnxError, match="graph"):
        rnnonnx.spark.predict_udf(str(BUNDLE), graph="fast")
    with pytest.raises(RnnonnxError, match="batch_size"):
        rnnonnx.spark.predict_udf(str(BUNDLE), batch_size=0)


@needs_spark
def test_one_cached_predictor_per_bundle_and_options():
    import rnnonnx.spark

    first = rnnonnx.spark.get_predictor(str(BUNDLE))
    assert rnnonnx.spark.get_predictor(str(BUNDLE) + "/") is first
    assert first.threads == 1
    assert rnnonnx.spark.get_predictor(str(BUNDLE), threads=2) is not first
    assert rnnonnx.spark.get_predictor(str(BUNDLE), graph="ids").graph == "ids"


def test_import_rnnonnx_does_not_import_pyspark_and_missing_pyspark_names_the_extra():
    code = (
        "import sys, rnnonnx, rnnonnx.predictor, rnnonnx.cli; assert 'pyspark' not in sys.modules, 'pyspark imported'\n"
        "from rnnonnx.errors import RnnonnxError\n"
        "for hidden in ('pyspark', 'pyarrow'):\n"
        "    saved = sys.modules.get(hidden)\n"
        "    sys.modules[hidden] = None\n"
        "    try:\n        import rnnonnx.spark\n    except RnnonnxError as exc:\n        print(exc)\n"
        "    finally:\n        sys.modules.pop(hidden)\n        sys.modules.update({hidden: saved} if saved else {})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all('pip install "rnnonnx[spark]"' in line for line in lines), lines
    assert "pyspark" in lines[0] and ("pyarrow" in lines[1] or _skip_reason() is not None)


@needs_spark
@pytest.mark.slow
def test_example_job_runs_with_spark_submit(tmp_path):
    """examples/spark_job.py as the README runs it: spark-submit --master local[2], bundle shipped."""
    import pyarrow.parquet as pq

    from rnnonnx.predictor import Predictor

    sample = ["A gorgeous, moving film.", "Flat, dull and far too long.", "", "Ünïcödé ✓"] * 50
    source = tmp_path / "texts.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows((i, text, "gold") for i, text in enumerate(sample))
    out = tmp_path / "preds.parquet"
    submit = Path(sys.executable).with_name("spark-submit")
    done = subprocess.run(
        [
            str(submit),
            "--master",
            "local[2]",
            "--driver-memory",
            "512m",
            "--conf",
            "spark.ui.enabled=false",
            str(ROOT / "examples" / "spark_job.py"),
            str(BUNDLE),
            str(source),
            str(out),
            "--ship",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(sample)} rows scored" in done.stdout  # spark-submit merges the job's stderr into stdout
    table = pq.read_table(out).to_pylist()
    table.sort(key=lambda row: int(row["id"]))
    want = Predictor(BUNDLE).predict(sample)
    assert [row["label"] for row in table] == ["gold"] * len(sample)  # the input's column is kept
    # Spark reads an empty CSV field as null, and a null text gets a null prediction
    assert [row["predicted_label"] for row in table] == [w.label if t else None for t, w in zip(sample, want)]
    assert max(abs(row["predicted_score"] - w.score) for row, w, t in zip(table, want, sample) if t) <= 1e-6
    assert dict(table[0]["predicted_probabilities"]).keys() == want[0].probabilities.keys()


@needs_spark
@pytest.mark.slow  # the shared session takes seconds to start
def test_a_multi_label_bundle_gives_label_sets(spark, tiny_multilabel_bundle):
    import rnnonnx.spark
    from rnnonnx.predictor import Predictor

    sample = ["photo image network http", "the and for", "sound music tool", None, "editor font pixel"] * 3
    texts = [t for t in sample if t is not None]
    for min_score in (None, 0.0):
        want = iter(p.to_dict() for p in Predictor(tiny_multilabel_bundle).predict(texts, min_score=min_score))
        udf = rnnonnx.spark.predict_udf(str(tiny_multilabel_bundle), min_score=min_score)
        rows = _frame(spark, sample).withColumn("pred", udf("text")).collect()
        for row in rows:
            if row["text"] is None:
                assert row["pred"] is None
                continue
            expected, got = next(want), row["pred"].asDict(recursive=True)
            assert got["labels"] == expected["labels"] and got["label"] == expected["label"]
        assert any(row["pred"] and row["pred"]["labels"] == [] for row in rows) == (min_score is None)

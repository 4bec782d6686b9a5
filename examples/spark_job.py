"""Score a text column with a bundle on Spark and write the predictions as Parquet.

    spark-submit --master local[2] examples/spark_job.py BUNDLE INPUT OUTPUT [--text-col text] [--ship]

INPUT is a CSV (with a header), JSON Lines or Parquet file or directory, by its extension
(``.csv``, ``.json``, ``.jsonl``, optionally ``.gz``; anything else is read as Parquet). OUTPUT is
a Parquet directory with INPUT's columns plus ``label``, ``score`` and ``probabilities`` (a map
label -> probability; named ``predicted_label``... when INPUT has a column of one of these names).
A null text (Spark reads an empty CSV field as null) gets a null prediction. Without ``--ship``
BUNDLE must be readable at the same path on every executor (shared storage); with ``--ship`` the
driver's local copy is sent to every executor through ``rnnonnx.spark.add_bundle``.
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession

import rnnonnx.spark
from rnnonnx.errors import RnnonnxError


def read(spark: SparkSession, path: str):
    lowered = path.lower().rstrip("/").removesuffix(".gz")  # Spark reads gzip files as they are
    if lowered.endswith(".csv"):
        return spark.read.option("header", True).option("escape", '"').option("multiLine", True).csv(path)
    if lowered.endswith((".json", ".jsonl")):
        return spark.read.json(path)
    return spark.read.parquet(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--ship", action="store_true", help="send the driver's bundle to the executors (add_bundle)")
    args = parser.parse_args()
    spark = SparkSession.builder.appName("rnnonnx-score").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        bundle = rnnonnx.spark.add_bundle(spark, args.bundle) if args.ship else args.bundle
        predict = rnnonnx.spark.predict_udf(bundle)
        df = read(spark, args.input)
        if args.text_col not in df.columns:
            raise RnnonnxError(f"{args.input}: no column {args.text_col!r} (columns: {', '.join(df.columns)})")
        cores = spark.sparkContext.defaultParallelism
        if df.rdd.getNumPartitions() < cores:  # e.g. one gzip file: spread it so every core scores
            df = df.repartition(cores)
        fields = ("label", "score", "probabilities")
        prefix = "predicted_" if set(fields) & set(df.columns) else ""  # as rnnonnx predict --output does
        pred = predict(args.text_col)
        scored = df.select("*", *[pred[name].alias(prefix + name) for name in fields])
        scored.write.mode("overwrite").parquet(args.output)
        print(f"{args.output}: {spark.read.parquet(args.output).count():,} rows scored")
    except RnnonnxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

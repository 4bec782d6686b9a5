"""Multi-label rnnonnx against TF-IDF + one-vs-rest logistic regression on the same split.

Trains the default recipe on ``DATA/train.txt`` (fastText format, as made by
``benchmarks/make_multilabel.py``) with ``--test 0``, exports it and scores the bundle on
``DATA/test.jsonl`` with ``rnnonnx evaluate`` (ONNX Runtime, per-label thresholds tuned on the
run's validation rows). The baseline (TF-IDF of word 1-2-grams, one logistic regression per
label) fits the run's own training rows (``train.txt`` without the run's validation rows), tunes
its thresholds on those validation rows the same way (:func:`rnnonnx.multilabel.tune_thresholds`)
and is scored once on the same test rows with the same code (:func:`rnnonnx.multilabel.scores`).

    python benchmarks/make_multilabel.py --out /tmp/debtags
    python benchmarks/multilabel.py --data /tmp/debtags --work /tmp/debtags-runs
    python benchmarks/multilabel.py --data /tmp/debtags --work /tmp/debtags-e60 --epochs 60

A run already in ``--work`` is scored again without retraining.

The same with the command line:

    rnnonnx train --data /tmp/debtags/train.txt --test 0 --out runs/debtags
    rnnonnx export runs/debtags && rnnonnx evaluate runs/debtags --data /tmp/debtags/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnonnx.machine import cpu_name  # noqa: E402  (the checkout's package, found through ROOT)


def baseline(data: Path, run: Path, labels: list[str], seed: int) -> dict:
    """TF-IDF + one-vs-rest logistic regression, thresholds tuned on the run's validation rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from rnnonnx.data import read_file
    from rnnonnx.multilabel import multi_hot, scores, tune_thresholds
    from rnnonnx.run import read_held_out

    everything = read_file(data / "train.txt")
    val_texts, val_sets = read_held_out(run, "validation")
    held = set(val_texts)
    train = [(t, s) for t, s in zip(everything.texts, everything.label_sets) if t not in held]
    test = read_file(data / "test.jsonl", multi_label=True)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform([t for t, _ in train])
    y_train = multi_hot([s for _, s in train], labels)[0]
    model = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=1000, random_state=seed)).fit(x_train, y_train)
    thresholds = tune_thresholds(model.predict_proba(vectorizer.transform(val_texts)), multi_hot(val_sets, labels)[0])
    proba = model.predict_proba(vectorizer.transform(test.texts))
    return scores(proba, multi_hot(test.label_sets, labels)[0], thresholds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the --out of make_multilabel.py")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rnnonnx-multilabel"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="rnnonnx train --epochs (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args()

    import os

    from rnnonnx import api
    from rnnonnx.run import is_run_dir

    run = args.work / "run"
    options = {"epochs": args.epochs} if args.epochs else {}
    train_seconds = None
    if not is_run_dir(run):
        started = time.perf_counter()
        api.train(run, args.data / "train.txt", test=0.0, seed=args.seed, progress=False, **options)
        train_seconds = time.perf_counter() - started
    if not (run / "bundle" / "manifest.json").is_file():
        api.export(run, log=lambda message: None)
    kept = json.loads((run / "metrics.json").read_text())
    validation = kept["multilabel"]["validation"]
    ours = api.evaluate(run, args.data / "test.jsonl", multi_label=True).scores()
    labels = json.loads((run / "labels.json").read_text())
    theirs = baseline(args.data, run, labels, args.seed)
    keys = (
        "micro_f1",
        "macro_f1",
        "micro_precision",
        "micro_recall",
        "subset_accuracy",
        "hamming_loss",
        "precision_at_1",
        "recall_at_3",
    )
    recipe = f"rnnonnx (epochs {args.epochs})" if args.epochs else "rnnonnx (default recipe)"
    lines = [
        f"| model | {' | '.join(keys)} |",
        "|---|" + "---|" * len(keys),
        f"| {recipe} | " + " | ".join(f"{ours[k]:.4f}" for k in keys) + " |",
        "| TF-IDF + one-vs-rest LR | " + " | ".join(f"{theirs[k]:.4f}" for k in keys) + " |",
        "",
        f"{len(labels)} tags; test rows scored once. rnnonnx kept epoch {kept['best_epoch']} of the first member; its validation "
        f"micro-F1 {validation['micro_f1']:.4f}, macro-F1 {validation['macro_f1']:.4f}. CPU: {cpu_name()}, {os.cpu_count()} cores"
        + (f"; training took {train_seconds:.0f} s." if train_seconds is not None else "."),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""The benchmark suite: rnnonnx's default recipe against TF-IDF + logistic regression and fastText, same splits.

Sets: the built-in movie sentences, the sets of make_datasets.py (debian-en/de/fr/ja/ko, kernel-docs, man-de)
and of make_suite_data.py (fortunes-en, fortunes-de, debian-sections, debian-synopses, man-fr), read from ``--data``.
For each set, ONE stratified split (80% train, 10% validation, 10% test, ``--seed``) is written once to
``OUT/splits/SET/`` and reused by every system and every later run (a changed source file is refused).

Systems, all fitted on the train rows, with every choice made on the validation rows:

* ``rnnonnx``: ``rnnonnx train`` defaults through the Python API (``analyzer=char`` for the Japanese
  and Korean sets, as ``auto`` resolves them, plus any ``--set FIELD=VALUE``), validating on the split's
  validation rows (its own test share unused), then ``rnnonnx export``; train time includes the export;
  size is the bundle folder.
* ``tfidf``: TF-IDF over 1-2-grams of rnnonnx's tokens (character 1-2-grams for ``char`` sets),
  sublinear tf, then logistic regression with C picked on validation from a fixed grid, on one thread
  (BLAS and OpenMP held to one, so a refit repeats its record).
* ``fasttext``: fastText supervised (PyPI ``fasttext-wheel``, in its own venv since it needs numpy<2):
  wordNgrams 2, dim 50, epoch 25, one thread, learning rate picked on validation from a fixed grid.
  Its input is rnnonnx's tokens joined by spaces (so ``char`` sets give character n-grams).
* ``fasttext-auto``: fastText's own ``-autotune-validation`` on the validation rows for
  ``--autotune-seconds``, one thread.

The test rows of each set are scored once, at the end of each system's run: accuracy, macro-F1, and
predict speed (texts/s over the test texts through each library's Python API, one thread, best of 3).
Each system's test predictions are kept in its work folder, and rnnonnx is compared with each peer row
by row: the difference in accuracy and macro-F1 with its paired bootstrap interval (``--rescore`` makes
the predictions of runs recorded before they were kept, and checks that they give the recorded scores).
Every run records the sha256 of the split it was scored on; a run of another split (a set rebuilt
since) is marked in the tables and left out of the row-by-row comparison (``--rescore`` ties a run
recorded before runs kept it to the current split when its kept predictions give its scores there).
Results go to ``--report`` (markdown) and the same path with ``.json`` (raw numbers, load averages, the
command and the rnnonnx commit); a set/system pair already in the JSON is skipped unless ``--redo``.

    benchmarks/.venv-fasttext/bin/pip install "numpy<2" fasttext-wheel   # or: python benchmarks/suite.py --setup
    nice -n 5 python benchmarks/suite.py --systems tfidf,fasttext
    nice -n 5 python benchmarks/suite.py --systems rnnonnx --only debian-en
    python benchmarks/suite.py --systems rnnonnx --set max_len=256 --report /tmp/suite-max_len.md
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import pickle
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
FASTTEXT_VENV = HERE / ".venv-fasttext"
SETS = {  # name -> analyzer
    "movie-sentences": "word",
    "debian-en": "word",
    "debian-de": "word",
    "debian-fr": "word",
    "debian-ja": "char",
    "debian-ko": "char",
    "kernel-docs": "word",
    "man-de": "word",
    "fortunes-en": "word",
    "fortunes-de": "word",
    "debian-sections": "word",
    "debian-synopses": "word",
    "man-fr": "word",
}
SYSTEMS = ("rnnonnx", "tfidf", "fasttext", "fasttext-auto")
PARTS = ("train", "validation", "test")
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FASTTEXT_LR_GRID = (0.1, 0.25, 0.5, 1.0)
PEERS = ("tfidf", "fasttext", "fasttext-auto")  # what rnnonnx is compared with, row by row
OFF_SPLIT = "†"  # marks a run not recorded on its set's current split
OFF_SPLIT_NOTE = (
    "not recorded on this split of the set (scored on an earlier one, or before runs kept their split's "
    "sha256, and not yet checked by `--rescore`): left out of the row-by-row comparison."
)
PREDICTIONS = "test_predictions.json"  # each system's test predictions, in its work folder
BOOTSTRAP_ROUNDS = 2000
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}

Rows = tuple[list[str], list[str]]
csv.field_size_limit(1 << 30)  # whole manual pages and kernel documents are single fields


# --- the split ------------------------------------------------------------------------------------


def stratified_split(labels: list[str], seed: int, validation: float = 0.1, test: float = 0.1) -> dict[str, list[int]]:
    """Row indices of each part: per class, a seeded shuffle, then the first ``test`` and ``validation``
    shares (rounded, at least one row each when the class has three or more) held out."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    parts: dict[str, list[int]] = {part: [] for part in PARTS}
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        n = len(rows)
        n_test = max(1, round(test * n)) if n >= 3 else 0
        n_val = max(1, round(validation * n)) if n >= 3 else 0
        parts["test"] += rows[:n_test]
        parts["validation"] += rows[n_test : n_test + n_val]
        parts["train"] += rows[n_test + n_val :]
    return {part: sorted(indices) for part, indices in parts.items()}


def read_rows(path: Path) -> Rows:
    """``text,label`` CSV rows."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(fh)]
    return [t for t, _ in rows], [label for _, label in rows]


def write_rows(path: Path, rows: Rows) -> None:
    """``text,label`` CSV, written to a temporary name first."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(*rows))
    tmp.replace(path)


def source_rows(name: str, data: Path) -> tuple[Rows, str] | None:
    """The rows of one set and a sha256 of their content (``None`` when its file is missing)."""
    if name == "movie-sentences":
        from rnnonnx.data import read_builtin

        builtin = read_builtin()
        rows = (builtin.texts, builtin.labels)
    else:
        path = data / f"{name}.csv"
        if not path.exists():
            return None
        rows = read_rows(path)
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    return rows, digest


def load_split(name: str, data: Path, out: Path, seed: int) -> dict[str, Rows] | None:
    """The split of one set: read from ``out/splits/name`` when there, else made and written once."""
    folder = out / "splits" / name
    found = source_rows(name, data)
    if found is None:
        return None
    rows, digest = found
    manifest = folder / "split.json"
    if manifest.exists():
        recorded = json.loads(manifest.read_text())
        if recorded["source_sha256"] != digest or recorded["seed"] != seed:
            sys.exit(f"{name}: {folder} was split from other data or another seed; remove it to split again")
        return {part: read_rows(folder / f"{part}.csv") for part in PARTS}
    indices = stratified_split(rows[1], seed)
    parts = {part: ([rows[0][i] for i in idx], [rows[1][i] for i in idx]) for part, idx in indices.items()}
    folder.mkdir(parents=True, exist_ok=True)
    for part, part_rows in parts.items():
        write_rows(folder / f"{part}.csv", part_rows)
    counts = {part: len(part_rows[0]) for part, part_rows in parts.items()}
    manifest.write_text(json.dumps({"source_sha256": digest, "seed": seed, "rows": counts}, indent=1))
    return parts


def describe_set(parts: dict[str, Rows], analyzer: str) -> dict[str, Any]:
    """Rows, classes, median tokens (rnnonnx's tokenizer) and the largest/smallest class share."""
    from rnnonnx.text import analyze

    texts = [t for part in PARTS for t in parts[part][0]]
    counts = Counter(label for part in PARTS for label in parts[part][1])
    return {
        "rows": len(texts),
        "classes": len(counts),
        "median_tokens": statistics.median(len(analyze(t, analyzer)) for t in texts),
        "analyzer": analyzer,
        "largest_class": max(counts.values()),
        "smallest_class": min(counts.values()),
        "split_rows": {part: len(parts[part][0]) for part in PARTS},
        "split_sha256": split_digest(parts),
    }


def split_digest(parts: dict[str, Rows]) -> str:
    """sha256 of a split's rows, part by part: every run records the one it was scored on, so a run
    of an earlier split (a set rebuilt since) is never read as this split's."""
    return hashlib.sha256(json.dumps([parts[part] for part in PARTS], ensure_ascii=False).encode()).hexdigest()


# --- scoring --------------------------------------------------------------------------------------


def scores(truth: list[str], predicted: list[str]) -> dict[str, float]:
    """Test accuracy and macro-F1 (classes weigh the same), in percent."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "test_accuracy": round(100 * accuracy_score(truth, predicted), 2),
        "test_macro_f1": round(100 * f1_score(truth, predicted, average="macro"), 2),
    }


def paired_bootstrap(
    truth: list[str], first: list[str], second: list[str], rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``first`` minus ``second`` in test accuracy and macro-F1 (percentage points), with the 95%
    interval of a paired bootstrap: the test rows resampled with replacement ``rounds`` times, both
    systems scored on the same resample. An interval that holds 0 is a difference the test rows
    cannot tell from chance; a few hundred rows leave several points either way."""
    import numpy as np

    classes = sorted(set(truth) | set(first) | set(second))
    index = {label: i for i, label in enumerate(classes)}
    true = np.array([index[t] for t in truth])
    picks = np.random.default_rng(seed).integers(0, len(true), size=(rounds, len(true)))
    weights = np.stack([np.bincount(row, minlength=len(true)) for row in picks]).astype(np.float64)
    weights = np.vstack([np.ones(len(true)), weights])  # row 0: the test rows as they are

    def both(predicted: list[str]) -> tuple[np.ndarray, np.ndarray]:
        pred = np.array([index[p] for p in predicted])
        accuracy = weights @ (pred == true) / len(true)
        hot = np.eye(len(classes))
        hits = weights @ (hot[true] * (pred == true)[:, None])
        totals = weights @ hot[true] + weights @ hot[pred]  # true + predicted count per class
        present = totals > 0  # macro-F1 over the classes a resample has (scikit-learn's labels)
        f1 = np.where(present, 2 * hits / np.where(present, totals, 1), 0.0)
        return 100 * accuracy, 100 * f1.sum(axis=1) / present.sum(axis=1)

    record = {}
    for metric, a, b in zip(("accuracy", "macro_f1"), both(first), both(second)):
        diff = a - b
        low, high = np.percentile(diff[1:], [2.5, 97.5])
        record[metric] = {"diff": round(float(diff[0]), 2), "low": round(float(low), 2), "high": round(float(high), 2)}
    return record


def save_predictions(work: Path, predicted: list[str]) -> None:
    """A system's test predictions (in test row order), kept for the paired comparison."""
    _write(work / PREDICTIONS, json.dumps(predicted, ensure_ascii=False))


def read_predictions(work: Path) -> list[str] | None:
    """The test predictions :func:`save_predictions` kept, if any."""
    path = work / PREDICTIONS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def paired_records(parts: dict[str, Rows], models: Path, results: dict[str, Any], name: str) -> dict[str, Any]:
    """rnnonnx against each peer whose test predictions are in ``models`` (a set's folder), both
    recorded on this split (:func:`on_split`)."""
    ours = read_predictions(models / "rnnonnx")
    if ours is None or not on_split(results, name, "rnnonnx"):
        return {}
    truth = parts["test"][1]
    found = {peer: read_predictions(models / peer) for peer in PEERS if on_split(results, name, peer)}
    return {peer: paired_bootstrap(truth, ours, theirs) for peer, theirs in found.items() if theirs is not None}


def on_split(results: dict[str, Any], name: str, system: str) -> bool:
    """Whether ``system``'s record of set ``name`` was scored on the set's current split."""
    run = results["runs"].get(f"{name}/{system}")
    return run is not None and run.get("split_sha256") == results["sets"][name].get("split_sha256")


def stamp(parts: dict[str, Rows], work: Path, run: dict[str, Any], digest: str) -> str:
    """Ties a run recorded before runs kept their split's digest to this split, when the test
    predictions it kept give its recorded scores on this split's test rows; what was done, in words."""
    predicted = read_predictions(work)
    if predicted is None or len(predicted) != len(parts["test"][1]):
        return "kept no predictions of this split's test rows; not tied to it (--redo runs it anew)"
    again = scores(parts["test"][1], predicted)
    if again != {k: run[k] for k in again}:
        return f"its kept predictions score {again} on this split, not its record; not tied to it (--redo)"
    run["split_sha256"] = digest
    return "its kept predictions give its recorded scores on this split: tied to it"


def texts_per_second(predict: Any, texts: list[str], rounds: int = 3) -> float:
    """Best of ``rounds`` timed passes over ``texts`` (after one warm-up pass)."""
    predict(texts)
    best = min(_timed(predict, texts) for _ in range(rounds))
    return round(len(texts) / best, 1)


def _timed(predict: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    predict(texts)
    return time.perf_counter() - started


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- the systems ----------------------------------------------------------------------------------


def tfidf_pipeline(analyzer: str, c: float, seed: int) -> Any:
    """The TF-IDF 1-2-gram vectorizer (rnnonnx's tokens, sublinear tf) and logistic regression at ``C=c``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from rnnonnx.baseline import NgramAnalyzer
    from rnnonnx.text import TokenizerSpec

    return make_pipeline(
        TfidfVectorizer(analyzer=NgramAnalyzer(TokenizerSpec(analyzer=analyzer)), sublinear_tf=True),
        LogisticRegression(C=c, max_iter=2000, random_state=seed),
    )


def run_tfidf(parts: dict[str, Rows], analyzer: str, work: Path, seed: int) -> dict[str, Any]:
    """TF-IDF 1-2-grams + logistic regression, C picked on validation accuracy; fitted on train only,
    on one thread (:func:`one_thread`)."""
    with one_thread():
        return _run_tfidf(parts, analyzer, work, seed)


def one_thread() -> Any:
    """A context with BLAS and OpenMP held to one thread: scikit-learn's lbfgs sums its loss over
    OpenMP threads, and another thread count gives other sums, so another C or fit; one thread, as
    fastText here, makes a refit repeat its record."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _run_tfidf(parts: dict[str, Rows], analyzer: str, work: Path, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    vectorizer = tfidf_pipeline(analyzer, 1.0, seed)[0]  # the grid shares one vectorizer
    train_x = vectorizer.fit_transform(parts["train"][0])
    val_x = vectorizer.transform(parts["validation"][0])
    tried = {}
    for c in C_GRID:
        model = tfidf_pipeline(analyzer, c, seed)[1].fit(train_x, parts["train"][1])
        tried[c] = float((model.predict(val_x) == parts["validation"][1]).mean())
    best_c = max(C_GRID, key=lambda c: (tried[c], -c))
    grid_seconds = time.perf_counter() - started
    started = time.perf_counter()  # the train time reported is that of the chosen settings alone
    pipeline = tfidf_pipeline(analyzer, best_c, seed).fit(*parts["train"])
    train_seconds = time.perf_counter() - started
    path = work / "model.pkl"
    path.write_bytes(pickle.dumps(pipeline))
    test_texts, test_labels = parts["test"]
    predicted = pipeline.predict(test_texts).tolist()
    save_predictions(work, predicted)
    return {
        "chosen": {
            "C": best_c,
            "val_accuracy": {str(c): round(100 * a, 2) for c, a in tried.items()},
            "grid_seconds": round(grid_seconds, 1),
        },
        "features": len(pipeline[0].vocabulary_),
        "train_seconds": round(train_seconds, 1),
        "size_bytes": path.stat().st_size,
        "predict_per_second": texts_per_second(pipeline.predict, test_texts),
        **scores(test_labels, predicted),
    }


def fasttext_lines(rows: Rows, analyzer: str) -> list[str]:
    """fastText's input: ``__label__L`` then the text's rnnonnx tokens joined by spaces."""
    from rnnonnx.text import analyze

    return [f"__label__{label.replace(' ', '_')} {' '.join(analyze(text, analyzer))}" for text, label in zip(*rows)]


def fit_fasttext(
    parts: dict[str, Rows], analyzer: str, work: Path, seed: int, autotune_seconds: int | None, lr_grid: Sequence[float]
) -> tuple[dict[str, Any], list[str]]:
    """Write fastText files, run the fastText worker in its venv: its record and its test predictions
    (labels as the data spells them)."""
    python = FASTTEXT_VENV / "bin" / "python"
    if not python.exists():
        sys.exit(f"no fastText venv at {FASTTEXT_VENV}: run python benchmarks/suite.py --setup")
    for part in PARTS:
        (work / f"{part}.txt").write_text("\n".join(fasttext_lines(parts[part], analyzer)) + "\n", encoding="utf-8")
    job = {"work": str(work), "seed": seed, "autotune_seconds": autotune_seconds, "lr_grid": list(lr_grid)}
    subprocess.run([str(python), __file__, "--fasttext-worker", json.dumps(job)], check=True)
    record = json.loads((work / "fasttext.json").read_text())
    labels = {label.replace(" ", "_"): label for label in parts["train"][1]}
    return record, [labels.get(p, p) for p in record.pop("test_predictions")]


def run_fasttext(parts: dict[str, Rows], analyzer: str, work: Path, seed: int, autotune_seconds: int | None) -> dict[str, Any]:
    """fastText (learning rate picked on validation, or its autotune), scored on the test rows here."""
    record, predicted = fit_fasttext(parts, analyzer, work, seed, autotune_seconds, FASTTEXT_LR_GRID)
    save_predictions(work, predicted)
    return record | scores(parts["test"][1], predicted)


def fasttext_worker(job: dict[str, Any]) -> None:
    """Runs inside the fastText venv: fit (grid or autotune on validation), time predict, write fasttext.json."""
    import fasttext

    work = Path(job["work"])
    common = {"wordNgrams": 2, "thread": 1, "seed": job["seed"], "verbose": 0}
    started = time.perf_counter()
    if job["autotune_seconds"]:
        model = fasttext.train_supervised(
            str(work / "train.txt"),
            autotuneValidationFile=str(work / "validation.txt"),
            autotuneDuration=job["autotune_seconds"],
            **common,
        )
        args = model.f.getArgs()
        chosen: dict[str, Any] = {
            k: getattr(args, k) for k in ("lr", "dim", "epoch", "wordNgrams", "minCount", "bucket", "dsub", "loss")
        }
        chosen["loss"] = str(chosen["loss"])
    else:
        tried, seconds, models = {}, {}, {}
        for lr in job["lr_grid"]:
            fit_started = time.perf_counter()
            models[lr] = fasttext.train_supervised(str(work / "train.txt"), lr=lr, dim=50, epoch=25, **common)
            seconds[lr] = time.perf_counter() - fit_started
            tried[lr] = models[lr].test(str(work / "validation.txt"))[1]
        best = max(job["lr_grid"], key=lambda lr: (tried[lr], -lr))
        model = models[best]
        chosen = {"lr": best, "dim": 50, "epoch": 25, "val_accuracy": {str(k): round(100 * v, 2) for k, v in tried.items()}}
        chosen["grid_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter() - seconds[best]  # the train time reported is that of the chosen fit alone
    train_seconds = time.perf_counter() - started
    model.save_model(str(work / "model.bin"))
    size = (work / "model.bin").stat().st_size
    (work / "model.bin").unlink()  # hundreds of MB each (2M hashed n-gram buckets): measured, not kept
    texts = [line.split(" ", 1)[1] if " " in line else "" for line in (work / "test.txt").read_text().splitlines()]

    def predict(batch: list[str]) -> list[str]:
        return [labels[0] for labels in model.predict(batch, k=1)[0]]

    speed = texts_per_second(predict, texts)
    record = {
        "chosen": chosen,
        "train_seconds": round(train_seconds, 1),
        "size_bytes": size,
        "predict_per_second": speed,
        "test_predictions": [label.removeprefix("__label__") for label in predict(texts)],
    }
    (work / "fasttext.json").write_text(json.dumps(record))


def run_rnnonnx(
    parts: dict[str, Rows], analyzer: str, work: Path, overrides: dict[str, Any], tolerance: float | None = None
) -> dict[str, Any]:
    """``rnnonnx train`` (defaults + ``overrides``) on train rows validated on the split's validation
    rows, then ``rnnonnx export`` (its parity ``tolerance``, default the product's); the bundle
    predicts the test texts."""
    import rnnonnx
    from rnnonnx import training

    trainval = work / "trainval.csv"
    n_train = len(parts["train"][0])
    write_rows(trainval, (parts["train"][0] + parts["validation"][0], parts["train"][1] + parts["validation"][1]))

    def fixed_split(data: Any, config: Any) -> Any:
        """The suite's split instead of rnnonnx's own: the first rows of the file train, the rest validate."""
        if data.texts[:n_train] != parts["train"][0] or len(data.texts) != len(parts["train"][0]) + len(parts["validation"][0]):
            raise RuntimeError("rnnonnx read the train+validation file differently from the suite")
        rows = (data.texts, data.labels)
        return training.SplitRows((rows[0][:n_train], rows[1][:n_train]), (rows[0][n_train:], rows[1][n_train:]), ([], []), False)

    options = ({"analyzer": analyzer} if analyzer != "word" else {}) | overrides
    run_dir, bundle = work / "run", work / "bundle"
    for folder in (run_dir, bundle):
        shutil.rmtree(folder, ignore_errors=True)
    original = training.split_rows
    training.split_rows = fixed_split
    try:
        started = time.perf_counter()
        metrics = rnnonnx.train(run_dir, trainval, **options)
        trained = time.perf_counter()
        rnnonnx.export(run_dir, bundle, tolerance=tolerance)
        exported = time.perf_counter()
    finally:
        training.split_rows = original
    predictor = rnnonnx.load(bundle, threads=1)
    test_texts, test_labels = parts["test"]

    def predict(texts: list[str]) -> list[str | None]:
        return [p.label for p in predictor.predict(texts)]

    from rnnonnx.config import TrainConfig

    predicted = [str(label) for label in predict(test_texts)]
    save_predictions(work, predicted)
    return {
        "chosen": {"options": options, "best_epoch": metrics.best_epoch, "val_accuracy": round(100 * metrics.val_accuracy, 2)},
        "config": asdict(TrainConfig.from_options(options)),
        "train_seconds": round(exported - started, 1),
        "fit_seconds": round(trained - started, 1),
        "export_seconds": round(exported - trained, 1),
        "export_tolerance": tolerance,
        "size_bytes": folder_bytes(bundle),
        "predict_per_second": texts_per_second(predict, test_texts),
        **scores(test_labels, predicted),
    }


def rescore(system: str, parts: dict[str, Rows], analyzer: str, work: Path, run: dict[str, Any], seed: int) -> list[str]:
    """The test predictions of a run recorded before predictions were kept, made again from what
    it left (rnnonnx's bundle) or by refitting its chosen settings on the train rows (TF-IDF's C,
    fastText's learning rate: both fits are deterministic). They must give the recorded scores."""
    test_texts, test_labels = parts["test"]
    if system == "rnnonnx":
        import rnnonnx

        predictor = rnnonnx.load(work / "bundle", threads=1)
        predicted = [str(p.label) for p in predictor.predict(test_texts)]
    elif system == "tfidf":
        with one_thread():
            pipeline = tfidf_pipeline(analyzer, run["chosen"]["C"], seed).fit(*parts["train"])
        predicted = pipeline.predict(test_texts).tolist()
    elif system == "fasttext":
        predicted = fit_fasttext(parts, analyzer, work, seed, None, [run["chosen"]["lr"]])[1]
    else:
        raise ValueError(f"{system}: its choices cannot be refitted exactly (a timed search)")
    again = scores(test_labels, predicted)
    recorded = {k: run[k] for k in again}
    if again != recorded:
        raise RuntimeError(f"{work}: predictions made again score {again}, the record says {recorded}")
    return predicted


# --- the report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU (name, generation) and core count, and the commit that last changed rnnonnx."""
    from rnnonnx.machine import cpu_name

    git = ["git", "-C", str(ROOT)]
    last = [*git, "log", "-1", "--format=%h", "--", "rnnonnx", "pyproject.toml"]  # the library's last change
    commit = subprocess.run(last, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "rnnonnx"], capture_output=True, text=True).stdout
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "rnnonnx_commit": commit + ("+dirty" if dirty.strip() else "")}


def report_markdown(results: dict[str, Any]) -> str:
    """The table: one row per set and system, figures in percent, sizes in KiB."""
    lines = [
        "# Benchmark suite: rnnonnx default recipe vs TF-IDF + logistic regression vs fastText",
        "",
        "Generated by `benchmarks/suite.py` from `SUITE.json` (raw numbers, choices made on validation, load averages).",
        "Each set has one stratified 80/10/10 split shared by every system; every setting is chosen on the",
        "validation rows; the test rows are scored once. Train time includes `rnnonnx export` for rnnonnx; fastText",
        "and TF-IDF + LR train on one thread, rnnonnx on every core; predict speed is texts/s over the test texts",
        "through each Python API on one thread. Every run is tied to the split it was scored on by its sha256.",
        "Times come from a machine shared with other jobs (load averages below): compare ratios within a set.",
        "",
    ]
    lines += _summary(results) + [""] + _paired(results)
    for name, set_info in _in_order(results["sets"]):
        runs = {system: results["runs"][f"{name}/{system}"] for system in SYSTEMS if f"{name}/{system}" in results["runs"]}
        if not runs:
            continue
        lines += [
            f"## {name}: {set_info['rows']} rows, {set_info['classes']} classes "
            f"({set_info['smallest_class']}-{set_info['largest_class']} per class), "
            f"median {set_info['median_tokens']:g} {set_info['analyzer']} tokens",
            "",
            "| system | test accuracy | macro-F1 | train s | size KiB | predict texts/s | chosen on validation |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for system, run in runs.items():
            mark = OFF_SPLIT * (not on_split(results, name, system))
            lines.append(
                f"| {system}{mark} | {run['test_accuracy']:.1f} | {run['test_macro_f1']:.1f} | {run['train_seconds']:g} | "
                f"{run['size_bytes'] / 1024:,.0f} | {run['predict_per_second']:,.0f} | {_chosen(system, run)} |"
            )
        lines.append("")
    lines += [
        "## Runs",
        "",
        "| set/system | rnnonnx commit | load average (1, 5, 15 min) before, after | command |",
        "|---|---|---|---|",
    ]
    for key, run in results["runs"].items():
        commit = run["machine"]["rnnonnx_commit"] if key.endswith("/rnnonnx") else ""
        lines.append(f"| {key} | {commit} | {run['load_before']}, {run['load_after']} | `{run['command']}` |")
    machines = sorted({(r["machine"]["cpu"], r["machine"]["cores"]) for r in results["runs"].values()})
    commits = sorted({r["machine"]["rnnonnx_commit"] for k, r in results["runs"].items() if k.endswith("/rnnonnx")})
    lines += ["", "Machine: " + "; ".join(f"{cpu}, {cores} cores" for cpu, cores in machines) + "."]
    if commits:
        lines.append(f"rnnonnx commit(s): {', '.join(commits)}.")
    return "\n".join(lines) + "\n"


def _in_order(sets: dict[str, Any]) -> list[tuple[str, Any]]:
    """The sets in the suite's order (the JSON keeps them in the order they were first run)."""
    return sorted(sets.items(), key=lambda item: list(SETS).index(item[0]) if item[0] in SETS else len(SETS))


def _summary(results: dict[str, Any]) -> list[str]:
    """One row per set: test accuracy / macro-F1 and train seconds of each system ("-": not run)."""
    systems = [s for s in SYSTEMS if any(key.endswith(f"/{s}") for key in results["runs"])]
    lines = [
        "| set | rows | classes | median tokens | "
        + " | ".join(f"{s} acc / F1" for s in systems)
        + " | "
        + " | ".join(f"{s} train s" for s in systems)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(systems)),
    ]
    for name, info in _in_order(results["sets"]):
        runs = [(results["runs"].get(f"{name}/{s}"), OFF_SPLIT * (not on_split(results, name, s))) for s in systems]
        scored = " | ".join(f"{r['test_accuracy']:.1f} / {r['test_macro_f1']:.1f}{mark}" if r else "-" for r, mark in runs)
        timed = " | ".join(f"{r['train_seconds']:g}" if r else "-" for r, _ in runs)
        lines.append(f"| {name} | {info['rows']} | {info['classes']} | {info['median_tokens']:g} | {scored} | {timed} |")
    if OFF_SPLIT in "".join(lines[2:]):
        lines += ["", f"{OFF_SPLIT} {OFF_SPLIT_NOTE}"]
    return lines


def _paired(results: dict[str, Any]) -> list[str]:
    """rnnonnx minus each peer, per set, with the paired bootstrap's 95% interval; and how many sets
    each side wins beyond chance (the interval clear of 0)."""
    sets = [(name, info["paired"]) for name, info in _in_order(results["sets"]) if info.get("paired")]
    peers = [p for p in PEERS if any(p in paired for _, paired in sets)]
    if not sets:
        return []
    lines = [
        "## rnnonnx against each peer, row by row",
        "",
        "rnnonnx's test score minus the peer's, in points, with the 95% interval of a paired bootstrap "
        f"({BOOTSTRAP_ROUNDS:,} resamples of the test rows, both systems scored on each). An interval that holds 0 "
        "is a difference these test rows cannot tell from chance.",
        "",
        "| set | test rows | " + " | ".join(f"vs {p}: accuracy | vs {p}: macro-F1" for p in peers) + " |",
        "|---|---:|" + "---:|" * (2 * len(peers)),
    ]
    tally = {(p, m): Counter() for p in peers for m in ("accuracy", "macro_f1")}
    for name, paired in sets:
        cells = []
        for peer in peers:
            for metric in ("accuracy", "macro_f1"):
                if peer not in paired:
                    cells.append("-")
                    continue
                d = paired[peer][metric]
                cells.append(f"{d['diff']:+.1f} ({d['low']:+.1f} to {d['high']:+.1f})")
                tally[peer, metric]["ahead" if d["low"] > 0 else "behind" if d["high"] < 0 else "within chance"] += 1
        rows = results["sets"][name]["split_rows"]["test"]
        lines.append(f"| {name} | {rows:,} | " + " | ".join(cells) + " |")
    lines.append("")
    for (peer, metric), counts in tally.items():
        if counts:
            told = ", ".join(f"{counts[k]} {k}" for k in ("ahead", "within chance", "behind"))
            lines.append(f"- against {peer}, {METRIC_NAMES[metric]}: {told} (of {sum(counts.values())} sets)")
    return [*lines, ""]


def _chosen(system: str, run: dict[str, Any]) -> str:
    chosen = run["chosen"]
    if system == "tfidf":
        return f"C={chosen['C']:g}"
    if system == "fasttext":
        return f"lr={chosen['lr']:g}"
    if system == "fasttext-auto":
        return f"lr={chosen['lr']:.2g}, dim={chosen['dim']}, epoch={chosen['epoch']}, wordNgrams={chosen['wordNgrams']}"
    options = " ".join(f"{k}={v}" for k, v in chosen["options"].items()) or "defaults"
    return f"{options}; epoch {chosen['best_epoch']}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` pairs; values that read as JSON (numbers, true/false, null) are converted."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"--set wants FIELD=VALUE, not {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def setup_fasttext() -> None:
    """Create the fastText venv (fasttext-wheel needs numpy<2, which the project's venv may not have)."""
    subprocess.run([sys.executable, "-m", "venv", str(FASTTEXT_VENV)], check=True)
    subprocess.run([str(FASTTEXT_VENV / "bin" / "pip"), "install", "numpy<2", "fasttext-wheel"], check=True)


def main() -> None:
    """Run the chosen systems on the chosen sets, skipping pairs already in the JSON, and rewrite the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/rnnonnx-data"), help="folder of the sets' CSV files")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-suite"), help="splits, models and bundles")
    parser.add_argument("--report", type=Path, default=HERE / "SUITE.md", help="markdown table; the JSON goes beside it")
    parser.add_argument("--only", default="", help="comma-separated set names (default: every set found)")
    parser.add_argument("--systems", default="tfidf,fasttext,rnnonnx", help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a rnnonnx TrainConfig option")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, help="rnnonnx export's parity tolerance (default: its own, 1e-5)")
    parser.add_argument("--autotune-seconds", type=int, default=60, help="fastText autotune budget per set")
    parser.add_argument("--redo", action="store_true", help="run pairs already in the JSON again")
    parser.add_argument("--setup", action="store_true", help="create the fastText venv and exit")
    parser.add_argument("--render", action="store_true", help="rewrite the markdown from the JSON and exit")
    parser.add_argument(
        "--rescore", action="store_true", help="make again the test predictions of recorded runs that kept none (checked)"
    )
    parser.add_argument("--fasttext-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fasttext_worker:
        return fasttext_worker(json.loads(args.fasttext_worker))
    if args.setup:
        return setup_fasttext()
    sys.path.insert(0, str(ROOT))
    systems = [s for s in args.systems.split(",") if s]
    names = [n for n in args.only.split(",") if n] or list(SETS)
    unknown = [s for s in systems if s not in SYSTEMS] + [n for n in names if n not in SETS]
    if unknown:
        sys.exit(f"unknown system or set: {', '.join(unknown)} (sets: {', '.join(SETS)})")
    overrides = parse_overrides(args.set)
    json_path = args.report.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {"sets": {}, "runs": {}}
    if args.render:
        return _write(args.report, report_markdown(results))
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:])
    for name in names:
        parts = load_split(name, args.data, args.out, args.seed)
        if parts is None:
            print(f"{name}: {args.data / (name + '.csv')} missing (make_datasets.py / make_suite_data.py)", file=sys.stderr)
            continue
        results["sets"][name] = describe_set(parts, SETS[name])
        for system in systems:
            key = f"{name}/{system}"
            work = args.out / "models" / name / system
            if key in results["runs"] and not args.redo:
                run = results["runs"][key]
                if args.rescore and read_predictions(work) is None and system == "fasttext-auto":
                    print(f"{key}: a timed search, not made again (--redo runs it anew)", file=sys.stderr)
                elif args.rescore and read_predictions(work) is None:
                    work.mkdir(parents=True, exist_ok=True)  # a work folder removed since: refitted into a new one
                    save_predictions(work, rescore(system, parts, SETS[name], work, run, args.seed))
                    run["split_sha256"] = results["sets"][name]["split_sha256"]  # rescore checked its scores on it
                    results = _merged(json_path, results, name, key, run)
                    _save(json_path, results)
                    print(f"{key}: test predictions made again, same scores", file=sys.stderr)
                elif args.rescore and not on_split(results, name, system):
                    print(f"{key}: " + stamp(parts, work, run, results["sets"][name]["split_sha256"]), file=sys.stderr)
                    results = _merged(json_path, results, name, key, run)
                    _save(json_path, results)
                else:
                    print(f"{key}: already in {json_path}, skipped", file=sys.stderr)
                continue
            work.mkdir(parents=True, exist_ok=True)
            load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            if system == "tfidf":
                run = run_tfidf(parts, SETS[name], work, args.seed)
            elif system == "rnnonnx":
                run = run_rnnonnx(parts, SETS[name], work, overrides, args.tolerance)
            else:
                autotune = args.autotune_seconds if system == "fasttext-auto" else None
                run = run_fasttext(parts, SETS[name], work, args.seed, autotune)
            run |= {
                "split_sha256": results["sets"][name]["split_sha256"],
                "when": when,
                "load_before": load_before,
                "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "command": command,
                "machine": machine(),
            }
            results = _merged(json_path, results, name, key, run)
            results["sets"][name]["paired"] = paired_records(parts, args.out / "models" / name, results, name)
            print(
                f"{key}: test accuracy {run['test_accuracy']:.1f}, macro-F1 {run['test_macro_f1']:.1f}, "
                f"train {run['train_seconds']:g} s, {run['size_bytes'] / 1024:,.0f} KiB, "
                f"{run['predict_per_second']:,.0f} texts/s",
                flush=True,
            )
            _save(json_path, results)
            _write(args.report, report_markdown(results))
        results["sets"][name]["paired"] = paired_records(parts, args.out / "models" / name, results, name)
        results = _merged(json_path, results, name, None, None)
        _save(json_path, results)
        _write(args.report, report_markdown(results))


def _merged(json_path: Path, results: dict[str, Any], name: str, key: str | None, run: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON as it is on disk now (another suite process may have added pairs) plus this set's
    record and this run (if any)."""
    on_disk = json.loads(json_path.read_text()) if json_path.exists() else {"sets": {}, "runs": {}}
    on_disk["sets"][name] = results["sets"][name]
    if key is not None:
        on_disk["runs"][key] = run
    return on_disk


def _save(json_path: Path, results: dict[str, Any]) -> None:
    """The results JSON, written whole through :func:`_write`."""
    _write(json_path, json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as fh:
        fh.write(text)
    Path(fh.name).replace(path)


if __name__ == "__main__":
    main()

"""Train the default recipe on the sets built by make_datasets.py and report held-out figures.

For each set: ``rnnonnx.training.train_run`` with ``TrainConfig()`` defaults (only ``--analyzer char``
for Japanese, and any ``--set`` overrides), then test accuracy and macro-F1 from the saved run, and a
TF-IDF + logistic regression reference fitted on the same training rows. The recipe was chosen on
the built-in data (benchmarks/recipe.py); settings tried on these sets (``--set``) are compared with
``--validation-only``, which neither computes nor prints test figures, so the test split of each set
is scored only for the settings finally reported.

    python benchmarks/make_datasets.py --out /tmp/rnnonnx-data
    python benchmarks/other_data.py --data /tmp/rnnonnx-data
    python benchmarks/other_data.py --only kernel-docs --set max_len=256 --validation-only
    python benchmarks/other_data.py --only kernel-docs --set max_len=256 --set pooling=max --validation-only

``--set`` takes TrainConfig fields (e.g. ``pooling=max``, ``members=3``, ``max_len=256``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUILTIN = "builtin"
SETS = {
    BUILTIN: "word",
    "debian-en": "word",
    "debian-de": "word",
    "debian-fr": "word",
    "debian-ja": "char",
    "kernel-docs": "word",
    "man-de": "word",
}


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    """Unweighted mean of per-class F1."""
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, average="macro"))


def predict_run(run_dir: Path, texts: list[str]) -> list[str]:
    """Labels predicted by a saved run (PyTorch, eval mode)."""
    import torch

    from rnnonnx.run import load_run

    run = load_run(run_dir)
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(texts), 256):
            ids = torch.from_numpy(run.tokenizer.encode_batch(texts[start : start + 256]))
            out.extend(run.labels[i] for i in run.model(ids).argmax(dim=1).tolist())
    return out


def tfidf_reference(train: tuple[list[str], list[str]], test: tuple[list[str], list[str]], analyzer: str) -> tuple[float, float]:
    """TF-IDF (word 1-2-grams, or char 1-3-grams for ``char``) + logistic regression: accuracy, macro-F1."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if analyzer == "char":
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    else:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = LogisticRegression(C=10, max_iter=3000).fit(vectorizer.fit_transform(train[0]), train[1])
    predicted = model.predict(vectorizer.transform(test[0])).tolist()
    accuracy = sum(p == t for p, t in zip(predicted, test[1])) / len(test[1])
    return accuracy, macro_f1(test[1], predicted)


def evaluate(
    name: str, path: Path, analyzer: str, overrides: dict[str, Any], work: Path, with_test: bool = True
) -> dict[str, Any]:
    """Train the defaults (plus ``overrides``) on one set; returns its figures, test ones only ``with_test``."""
    from rnnonnx.config import TrainConfig
    from rnnonnx.data import read_builtin, read_file, split
    from rnnonnx.run import read_held_out
    from rnnonnx.text import analyze
    from rnnonnx.training import train_run as train

    data = read_builtin() if name == BUILTIN else read_file(path)
    config = TrainConfig(**{"analyzer": analyzer, "device": "cpu"} | overrides)
    out = work / (name + "".join(f"-{k}={v}" for k, v in sorted(overrides.items())))
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = train(config, out, data, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    lengths = [len(analyze(t, analyzer)) for t in data.texts]
    record = {
        "set": name,
        "rows": len(data.texts),
        "classes": len(set(data.labels)),
        "median_tokens": statistics.median(lengths),
        "max_len": json.loads((out / "config.json").read_text())["training"].get("resolved_max_len", config.max_len),
        "truncated_share": None,
        "analyzer": analyzer,
        "overrides": overrides,
        "val_accuracy": metrics.val_accuracy,
        "best_epoch": metrics.best_epoch,
        "epochs_run": len(metrics.epochs),
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "config": asdict(config),
    }
    record["truncated_share"] = sum(n > record["max_len"] for n in lengths) / len(lengths)
    parts = split(data.labels, config.validation, config.test, config.seed)  # the split train() used
    train_rows = ([data.texts[i] for i in parts.train], [data.labels[i] for i in parts.train])
    if not with_test:
        record["tfidf_lr_val_accuracy"] = tfidf_reference(train_rows, read_held_out(out, "validation"), analyzer)[0]
    if with_test:
        test = read_held_out(out, "test")
        ref_acc, ref_f1 = tfidf_reference(train_rows, test, analyzer)
        record |= {
            "test_accuracy": metrics.test_accuracy,
            "test_macro_f1": macro_f1(test[1], predict_run(out, test[0])),
            "tfidf_lr_test_accuracy": ref_acc,
            "tfidf_lr_test_macro_f1": ref_f1,
        }
    return record


def bag_only() -> None:
    """Make every TextClassifier read its bag-of-n-grams branch alone (zeros where the recurrent
    features go): the same head, embeddings and training, without the recurrent information."""
    import torch

    from rnnonnx.model import TextClassifier, _scaled

    def forward(self: TextClassifier, input_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.embedding(input_ids)
        bag = self._bag(input_ids, tokens)
        zeros = bag.new_zeros((len(bag), self.head.in_features - bag.shape[1]))
        return _scaled(self.head(self.dropout(torch.cat([zeros, bag], dim=-1))), self.config.temperature)

    TextClassifier.forward = forward


def main() -> None:
    """Command line: evaluate every set found in ``--data`` (or ``--only`` some)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/rnnonnx-data"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/rnnonnx-other"))
    parser.add_argument("--only", default="", help="comma-separated set names")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a TrainConfig field")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="print and record validation figures only (for choosing settings on these sets)",
    )
    parser.add_argument(
        "--bag-only",
        action="store_true",
        help="ablation: the recurrent features are replaced by zeros, so the head reads the bag-of-n-grams branch alone "
        "(single member, trained in this process)",
    )
    args = parser.parse_args()
    import torch

    if args.bag_only:
        bag_only()

    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    args.work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(SETS)
    for name in names:
        path = args.data / f"{name}.csv"
        if name != BUILTIN and not path.exists():
            print(f"{name}: {path} missing (run make_datasets.py)", file=sys.stderr)
            continue
        record = evaluate(name, path, SETS[name], overrides, args.work, with_test=not args.validation_only)
        if args.validation_only:
            with (args.work / "validation.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(
                f"{name}: val {100 * record['val_accuracy']:.1f} (epoch {record['best_epoch']}/{record['epochs_run']}), "
                f"TF-IDF+LR val {100 * record['tfidf_lr_val_accuracy']:.1f}, {record['cpu_s']:.0f} CPU s, "
                f"{record['wall_s']:.0f} s, {100 * record['truncated_share']:.0f}% over max_len {record['max_len']} "
                f"{overrides or ''}{' bag only' if args.bag_only else ''}",
                flush=True,
            )
            continue
        with (args.work / "results.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(
            f"{name}: {record['rows']} rows, {record['classes']} classes, median {record['median_tokens']:.0f} tokens "
            f"({100 * record['truncated_share']:.0f}% over max_len) | val {100 * record['val_accuracy']:.1f} "
            f"test {100 * record['test_accuracy']:.1f} macro-F1 {100 * record['test_macro_f1']:.1f} | "
            f"TF-IDF+LR test {100 * record['tfidf_lr_test_accuracy']:.1f} "
            f"macro-F1 {100 * record['tfidf_lr_test_macro_f1']:.1f} | "
            f"epoch {record['best_epoch']}/{record['epochs_run']}, {record['cpu_s']:.0f} CPU s {overrides or ''}",
            flush=True,
        )


if __name__ == "__main__":
    main()

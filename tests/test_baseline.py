"""`rnnonnx train --baseline`: TF-IDF 1-2-grams + logistic regression on the RNN's own split."""

from __future__ import annotations

import json
import math
import random

import pytest
from click.testing import CliRunner

from rnnonnx import baseline
from rnnonnx.baseline import NgramAnalyzer, baseline_metrics, comparison
from rnnonnx.cli import main
from rnnonnx.data import LabelledTexts, read_file
from rnnonnx.run import Metrics
from rnnonnx.text import TokenizerSpec
from tests.conftest import small_sample

FILLER = ["the", "film", "plot", "actors", "story", "music", "ending", "scenes", "cast", "pace"]


def separable(n: int = 120, seed: int = 0) -> LabelledTexts:
    """Texts whose label is given away by one word: a linear model must get them all right."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILLER, 4) + ["wonderful" if label == "pos" else "dreadful"]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return LabelledTexts(texts, labels, "separable")


def test_ngrams_come_from_the_shared_tokenizer():
    analyzer = NgramAnalyzer(TokenizerSpec())
    assert analyzer("The FILM, a film!") == ["the", "film", "film", "the film", "film film"]
    assert NgramAnalyzer(TokenizerSpec(analyzer="char"))("Ab c") == ["a", "b", "c", "a b", "b c"]


def test_baseline_learns_a_separable_task():
    data = separable()
    train, held = (data.texts[:80], data.labels[:80]), (data.texts[80:], data.labels[80:])
    record = baseline_metrics(train, held, held, TokenizerSpec())
    assert record["model"] == "tfidf-1-2gram+logreg"
    assert record["val_accuracy"] == record["test_accuracy"] == 1.0
    assert 0 < record["val_loss"] < 0.5
    assert record["features"] > len(FILLER)


def test_baseline_scores_on_real_sentences_are_sane():
    data = small_sample(400)
    train, held = (data.texts[:300], data.labels[:300]), (data.texts[300:], data.labels[300:])
    record = baseline_metrics(train, held, ([], []), TokenizerSpec())
    assert 0.5 < record["val_accuracy"] <= 1.0 and math.isfinite(record["val_loss"])
    assert "test_accuracy" not in record  # no test rows, no test score


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    """A tiny run with the baseline, and the arguments the baseline was fitted with."""
    from rnnonnx.config import TrainConfig
    from rnnonnx.training import train_run as train

    seen = {}

    def spy(train_rows, validation, test, *args):
        seen.update(train=train_rows, validation=validation, test=test)
        return real(train_rows, validation, test, *args)

    real = baseline.baseline_metrics
    out = tmp_path_factory.mktemp("baseline") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(baseline, "baseline_metrics", spy)
        metrics = train(
            TrainConfig(embed_dim=8, hidden=8, epochs=1, baseline=True, validation=0.2, test=0.2),
            out,
            separable(),
            progress=False,
        )
    return out, metrics, seen


def test_baseline_is_fitted_on_the_runs_split_and_recorded(baseline_run):
    out, metrics, seen = baseline_run
    validation = read_file(out / "validation.jsonl")
    test = read_file(out / "test.jsonl")
    assert seen["validation"] == (validation.texts, validation.labels)
    assert seen["test"] == (test.texts, test.labels)
    assert len(seen["train"][0]) == 120 - 24 - 24
    assert not set(seen["train"][0]) & set(test.texts + validation.texts)
    recorded = json.loads((out / "metrics.json").read_text())["baseline"]
    assert recorded == metrics.baseline
    assert recorded["test_accuracy"] == recorded["val_accuracy"] == 1.0
    assert json.loads((out / "config.json").read_text())["training"]["baseline"] is True


def as_metrics(record: dict) -> Metrics:
    """A metrics record with only the fields the comparison reads set."""
    return Metrics.from_dict(
        {"epochs": [], "monitor": "val_accuracy", "validation_is_train": False, "train_seconds": 1.0} | record
    )


def test_comparison_names_the_winner():
    metrics = {
        "best_epoch": 4,
        "val_loss": 0.5,
        "val_accuracy": 0.78,
        "test_loss": 0.52,
        "test_accuracy": 0.75,
        "baseline": {
            "model": "tfidf-1-2gram+logreg",
            "val_loss": 0.45,
            "val_accuracy": 0.8,
            "test_loss": 0.47,
            "test_accuracy": 0.8,
        },
    }
    lines = comparison(as_metrics(metrics), "lstm").splitlines()
    assert lines[0].split() == ["model", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    assert lines[1].split() == ["lstm", "(epoch", "4)", "0.5000", "0.7800", "0.5200", "0.7500"]
    assert lines[2].split() == ["tfidf-1-2gram+logreg", "0.4500", "0.8000", "0.4700", "0.8000"]
    assert lines[3] == "the baseline beats the RNN on test accuracy by 5.00 points"
    metrics["test_accuracy"] = 0.8
    assert comparison(as_metrics(metrics), "lstm").splitlines()[3] == "the RNN and the baseline tie on test accuracy"
    for key in ("test_loss", "test_accuracy"):
        del metrics[key], metrics["baseline"][key]
    metrics.update(val_accuracy=0.9, validation_is_train=True)
    lines = comparison(as_metrics(metrics), "gru").splitlines()
    assert lines[3] == "the RNN beats the baseline on val accuracy by 10.00 points"
    assert "training rows" in lines[4]


def test_cli_train_with_baseline_prints_both_scores(tmp_path):
    data = separable()
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in zip(data.texts, data.labels)), encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(csv),
            "--out",
            str(tmp_path / "run"),
            "--baseline",
            "--quiet",
            "--epochs",
            "1",
            "--embed-dim",
            "8",
            "--hidden",
            "8",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["model", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    assert lines[2].startswith("lstm (ensemble of 3)") and lines[3].startswith("tfidf-1-2gram+logreg")
    assert "on test accuracy" in lines[4]

"""Training: vocabulary, determinism, early stopping with best weights, run directory, devices."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from rnnonnx.config import TrainConfig
from rnnonnx.data import LabelledTexts
from rnnonnx.errors import RnnonnxError
from rnnonnx.fitting import evaluate_loss
from rnnonnx.run import load_run
from rnnonnx.text import Tokenizer, TokenizerSpec
from rnnonnx.training import build_vocab
from rnnonnx.training import train_run as train
from tests.conftest import small_sample

FAST = dict(embed_dim=8, hidden=8, max_len=20, members=1)


def test_vocabulary_is_built_by_scikit_learn_with_our_analyzer():
    texts = ["Good film good", "bad FILM", "film noir"]
    assert build_vocab(texts, TokenizerSpec()) == ["<pad>", "<unk>", "bad", "film", "good", "noir"]
    assert build_vocab(texts, TokenizerSpec(), min_df=2) == ["<pad>", "<unk>", "film"]
    assert build_vocab(texts, TokenizerSpec(), max_vocab=1) == ["<pad>", "<unk>", "film"]
    assert build_vocab(["日本"], TokenizerSpec(analyzer="char")) == ["<pad>", "<unk>", "日", "本"]
    with pytest.raises(RnnonnxError, match="vocabulary"):
        build_vocab(["a b c"], TokenizerSpec())


def test_run_directory_contents(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "labels.json",
        "metrics.json",
        "validation.jsonl",
        "test.jsonl",
    }
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["format"] == "rnnonnx-run/1" and config["model"]["arch"] == "lstm"
    assert config["data"]["train"] + config["data"]["validation"] + config["data"]["test"] == 400
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]
    assert set(metrics["epochs"][0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert "members.2.embedding.weight" in load_file(str(tiny_run / "model.safetensors"))  # the default ensemble of 3


def test_same_seed_same_model(tmp_path):
    config = TrainConfig(epochs=1, seed=5, **FAST)
    train(config, tmp_path / "a", small_sample(200), progress=False)
    train(config, tmp_path / "b", small_sample(200), progress=False)
    train(TrainConfig(epochs=1, seed=6, **FAST), tmp_path / "c", small_sample(200), progress=False)
    a, b, c = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_early_stopping_keeps_the_best_epoch(tmp_path, monitor):
    metrics = train(
        TrainConfig(epochs=12, patience=1, lr=0.05, monitor=monitor, refit=False, **FAST),
        tmp_path / "r",
        small_sample(300),
        progress=False,
    )
    history = metrics.epochs
    assert len(history) < 12, "validation never stalled: early stopping did not trigger"
    if monitor == "val_loss":
        best = min(history, key=lambda e: e["val_loss"])
    else:
        best = min(history, key=lambda e: (-e["val_accuracy"], e["val_loss"]))
    assert metrics.best_epoch == best["epoch"] and metrics.monitor == monitor
    run = load_run(tmp_path / "r")
    texts, labels = run.held_out("validation")
    ids = torch.from_numpy(run.tokenizer.encode_batch(texts))
    target = torch.tensor([run.labels.index(y) for y in labels])
    loss, _ = evaluate_loss(run.model, ids, target, torch.device("cpu"))
    assert loss == pytest.approx(metrics.val_loss, rel=1e-5), "the saved weights are not the best epoch's"


def test_four_sentence_dataset_trains(tmp_path):
    texts = [
        "I love this product",
        "This is a bad product",
        "I am happy with this purchase",
        "I am disappointed with this purchase",
    ]
    data = LabelledTexts(texts, ["0", "1", "0", "1"], "four")
    metrics = train(TrainConfig(epochs=2, **FAST), tmp_path / "r", data, progress=False)
    assert metrics.validation_is_train and metrics.test_accuracy is None


def test_analyzer_auto_reads_japanese_by_character_and_records_the_choice(tmp_path, capsys):
    good, bad = ("良い", "素晴らしい"), ("悪い", "退屈")
    texts = [f"この{w}はとても{a}です" for w in ("映画", "本", "曲", "店", "料理") for a in good + bad]
    labels = ["pos" if any(a in t for a in good) else "neg" for t in texts]
    train(TrainConfig(epochs=1, **FAST), tmp_path / "r", LabelledTexts(texts * 2, labels * 2, "ja"), progress=True)
    assert "analyzer auto: char (100% of the letters and digits" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "tokenizer.json").read_text())["analyzer"] == "char"
    assert json.loads((tmp_path / "r" / "config.json").read_text())["training"]["analyzer"] == "char"
    assert "映" in load_run(tmp_path / "r").tokenizer.vocab  # single characters, not one token per clause


def test_single_class_is_refused(tmp_path):
    with pytest.raises(RnnonnxError, match="only one class"):
        train(TrainConfig(epochs=1), tmp_path / "r", LabelledTexts(["a b", "c d"], ["x", "x"], "one"), progress=False)
    assert not (tmp_path / "r").exists()


def test_ensemble_run_scores_the_ensemble_and_keeps_each_members_history(tmp_path):
    metrics = train(
        TrainConfig(epochs=2, device="cpu", refit=False, **FAST | {"members": 2, "linear_weight": 0}),
        tmp_path / "run",
        small_sample(300),
        progress=False,
    )
    run = load_run(tmp_path / "run")
    assert [m.seed for m in metrics.members] == [0, 1000] and metrics.epochs == metrics.members[0].epochs
    texts, labels = run.held_out("validation")
    ids = torch.from_numpy(run.tokenizer.encode_batch(texts))
    gold = torch.tensor([run.labels.index(label) for label in labels])
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(ids), dim=-1) for m in run.model.members]).mean(dim=0)
    assert abs(float((mean.argmax(1) == gold).double().mean()) - metrics.val_accuracy) < 1e-9
    assert "members.1.embedding.weight" in load_file(str(tmp_path / "run" / "model.safetensors"))


def test_auto_pooling_reads_the_median_text_length():
    from rnnonnx.training import resolve_pooling

    spec = TokenizerSpec(max_len=8)
    tokenizer = Tokenizer(spec, ["<pad>", "<unk>", "good", "film"])
    short, long = "good film", " ".join(["word"] * 5)  # 2 and 5 tokens (the long one unknown); half of max_len is 4

    def ids(*texts):
        return torch.from_numpy(tokenizer.encode_batch(texts))

    assert resolve_pooling("auto", ids(short, short, long), spec.max_len) == "last"
    assert resolve_pooling("auto", ids(short, long, long), spec.max_len) == "max"
    assert (
        resolve_pooling("concat", ids(short, short, short), 8) == "concat"
        and resolve_pooling("last", ids(long, long, long), 8) == "last"
    )


def test_auto_pooling_reads_32_tokens_as_long_under_a_longer_max_len():
    from rnnonnx.training import resolve_pooling

    ids = torch.zeros(3, 512, dtype=torch.long)
    ids[:, :40] = 2  # 40 tokens: far under half of 512, past half of the reference 64
    assert resolve_pooling("auto", ids, 512) == "max"
    ids[:, 20:] = 0
    assert resolve_pooling("auto", ids, 512) == "last"


def test_run_records_the_pooling_auto_chose(tmp_path):
    train(TrainConfig(epochs=1, **FAST | {"max_len": 4}), tmp_path / "r", small_sample(200), progress=False)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["training"]["pooling"] == "auto" and config["model"]["pooling"] == "max"
    assert load_run(tmp_path / "r").model.config.pooling == "max"


def test_refit_and_epochs_auto_follow_the_training_rows_and_the_run_records_the_choice(tmp_path, monkeypatch, capsys):
    from rnnonnx import config

    def threshold(rows: int) -> None:
        monkeypatch.setattr(config, "MANY_ROWS", rows)

    monkeypatch.setattr(config, "AUTO_EPOCHS", 2)
    monkeypatch.setattr(config, "MANY_ROWS_EPOCHS", 1)
    data, options = small_sample(200), dict(patience=5, linear_weight=0, **FAST)
    threshold(161)  # 200 rows split 80/10/10: 160 training rows
    refitted = train(TrainConfig(**options), tmp_path / "few", data, progress=True)
    threshold(160)
    plain = train(TrainConfig(**options), tmp_path / "many", data, progress=True)
    assert refitted.refit["rows"] == 180 and plain.refit is None
    assert [len(refitted.epochs), len(plain.epochs)] == [2, 1]
    records = [json.loads((tmp_path / name / "config.json").read_text())["training"] for name in ("few", "many")]
    assert [(r["refit"], r["epochs"]) for r in records] == [(True, 2), (False, 1)]
    err = capsys.readouterr().err
    for line in ("refit auto: yes", "epochs auto: 2"):
        assert f"{line} (160 training rows, fewer than 161)" in err
    for line in ("refit auto: no", "epochs auto: 1"):
        assert f"{line} (160 training rows, at least 160)" in err


def test_a_refused_out_is_refused_before_training(tmp_path, monkeypatch):
    from rnnonnx import training
    from rnnonnx.errors import OutputError

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(training, "fit_members", no_training)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    with pytest.raises(OutputError, match="not an rnnonnx run"):
        train(TrainConfig(epochs=1, **FAST), tmp_path / "mine", small_sample(40), progress=False)
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_a_class_seen_once_is_named_and_the_others_are_still_scored(tmp_path, capsys):
    sample = small_sample(200)
    data = LabelledTexts(sample.texts + ["an odd one out"], sample.labels + ["odd"], "with a rare class")
    metrics = train(TrainConfig(epochs=1, **FAST), tmp_path / "r", data, progress=False)
    assert metrics.test_accuracy is not None and not metrics.validation_is_train
    assert "class(es) 'odd' (1 row): they are trained on but not scored" in capsys.readouterr().err
    assert load_run(tmp_path / "r").labels == ["neg", "odd", "pos"]


def test_class_weights_are_resolved_on_the_training_rows_and_recorded(tmp_path):
    sample = small_sample(300)
    keep = [i for i, y in enumerate(sample.labels) if y == "neg" or i % 6 == 1]  # about 5 neg : 1 pos
    data = LabelledTexts([sample.texts[i] for i in keep], [sample.labels[i] for i in keep], "imbalanced")
    train(TrainConfig(epochs=1, class_weight="balanced", **FAST), tmp_path / "r", data, progress=False)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["training"]["class_weight"] == "balanced"
    weights = config["training"]["class_weights"]
    assert set(weights) == {"neg", "pos"} and weights["pos"] > 2 * weights["neg"]
    # balanced: w = rows / (2 * rows of the class), so the classes' shares 1 / (2 w) add up to 1.
    assert 1 / (2 * weights["neg"]) + 1 / (2 * weights["pos"]) == pytest.approx(1.0)


def test_a_multi_label_run_records_its_task_thresholds_and_scores(tiny_multilabel_run):
    config = json.loads((tiny_multilabel_run / "config.json").read_text())
    metrics = json.loads((tiny_multilabel_run / "metrics.json").read_text())
    assert config["task"] == "multi-label" and config["model"]["multi_label"] is True
    assert json.loads((tiny_multilabel_run / "labels.json").read_text()) == ["audio", "graphics", "network", "text"]
    assert config["thresholds"] == list(metrics["multilabel"]["thresholds"].values())
    assert all(0 < t < 1 for t in config["thresholds"]) and "calibration" not in metrics
    assert metrics["multilabel"]["test"]["micro_f1"] > 0.8 and "val_micro_f1" in metrics["epochs"][0]
    first = json.loads((tiny_multilabel_run / "test.jsonl").read_text().splitlines()[0])
    assert isinstance(first["label"], list)
    # refitted on train + validation with the thresholds tuned before: validation scores are the early-stopped model's
    assert metrics["refit"]["rows"] == config["data"]["train"] + config["data"]["validation"]
    assert metrics["refit"]["epochs"] == [m["best_epoch"] for m in metrics["members"]]


def test_multi_label_runs_refuse_autotune_and_a_test_file_of_the_other_kind(tmp_path):
    data = LabelledTexts(["red sound", "blue photo"], [], "tiny", label_sets=[["a"], ["a", "b"]])
    with pytest.raises(RnnonnxError, match="--autotune searches multi-class models"):
        train(TrainConfig(autotune="1m", **FAST), tmp_path / "r", data, progress=False)
    single = LabelledTexts(["red sound"], ["a"], "one.csv")
    with pytest.raises(RnnonnxError, match="the training data is multi-label, the test file multi-class"):
        train(TrainConfig(test=0.0, **FAST), tmp_path / "r", data, progress=False, test_data=single)


def test_multi_label_class_weights_are_positive_weights():
    from rnnonnx.training import _positive_weights

    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert _positive_weights(TrainConfig(class_weight="balanced"), ["a", "b", "c"], targets) == [1 / 3, 3.0, 1.0]
    assert _positive_weights(TrainConfig(class_weight="b=4"), ["a", "b", "c"], targets) == [1.0, 4.0, 1.0]
    assert _positive_weights(TrainConfig(), ["a", "b", "c"], targets) is None


def test_tiny_multi_label_data_keeps_default_thresholds_and_refuses_the_baseline(tmp_path, capsys):
    data = LabelledTexts(
        ["red sound", "blue photo", "red photo sound", "nothing"], [], "tiny", label_sets=[["a"], ["b"], ["a", "b"], []]
    )
    train(TrainConfig(epochs=1, **FAST), tmp_path / "run", data, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["thresholds"] == [0.5, 0.5]
    assert "thresholds: 0.5 for every label, since the validation rows are the training rows" in capsys.readouterr().err
    with pytest.raises(RnnonnxError, match="--baseline fits a multi-class baseline"):
        train(TrainConfig(epochs=1, baseline=True, **FAST), tmp_path / "other", data, progress=False)
    with pytest.raises(RnnonnxError, match="multi-label data needs at least two distinct labels"):
        train(TrainConfig(epochs=1, **FAST), tmp_path / "other", LabelledTexts(["x", "y"], [], "t", label_sets=[["a"], []]))


def test_refit_trains_each_member_again_on_train_and_validation_for_its_own_epochs(tmp_path):
    """The refit run's validation figures and temperature are the early-stopped model's (the same
    as without refit); its weights, test figures and test calibration are the refitted model's."""
    data = small_sample(300)
    options = dict(epochs=4, patience=1, lr=0.02, baseline=True, **FAST | {"members": 2})
    plain = train(TrainConfig(refit=False, **options), tmp_path / "plain", data, progress=False)
    refit = train(TrainConfig(refit=True, **options), tmp_path / "refit", data, progress=False)
    config = json.loads((tmp_path / "refit" / "config.json").read_text())
    assert refit.refit["rows"] == config["data"]["train"] + config["data"]["validation"] == 270
    assert refit.refit["epochs"] == [m.best_epoch for m in plain.members] == [m.best_epoch for m in refit.members]
    assert (refit.val_accuracy, refit.val_loss) == (plain.val_accuracy, plain.val_loss)
    assert refit.calibration["temperature"] == plain.calibration["temperature"]
    assert plain.refit is None and "refit" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("plain", "refit"))
    assert all(not torch.equal(a[k], b[k]) for k in a if k.endswith("rnn.weight_ih_l0"))
    run = load_run(tmp_path / "refit")
    texts, labels = run.held_out("test")
    ids = torch.from_numpy(run.tokenizer.encode_batch(texts))
    loss, accuracy = evaluate_loss(run.model, ids, torch.tensor([run.labels.index(y) for y in labels]), torch.device("cpu"))
    assert (loss, accuracy) == pytest.approx((refit.test_loss, refit.test_accuracy), rel=1e-6)
    assert refit.calibration["test"]["after"]["nll"] == pytest.approx(refit.test_loss, rel=1e-6)
    # the baseline sees the same rows: refitted on train + validation before its test score
    assert refit.baseline["refit"] is True and "refit" not in plain.baseline
    assert refit.baseline["val_accuracy"] == plain.baseline["val_accuracy"]


def test_refit_is_skipped_when_validation_reuses_the_training_rows(tmp_path, capsys):
    data = LabelledTexts(["good film", "bad film", "fine movie", "awful movie"], ["1", "0", "1", "0"], "four")
    metrics = train(TrainConfig(epochs=1, **FAST), tmp_path / "r", data, progress=False)
    assert metrics.refit is None and "no refit" in capsys.readouterr().err


def test_own_test_file_replaces_the_held_out_split(tmp_path):
    from rnnonnx.api import train as api_train

    sample = small_sample(240)
    data, own = tmp_path / "train.jsonl", tmp_path / "test.csv"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(sample.texts[:200], sample.labels[:200])))
    own.write_text(
        "text,label\n" + "".join(f'"{t.replace(chr(34), "")}",{y}\n' for t, y in zip(sample.texts[200:], sample.labels[200:]))
    )
    metrics = api_train(tmp_path / "r", data, test_file=own, epochs=1, **FAST)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["training"]["test"] == 0 and config["data"]["test_source"] == str(own)
    assert config["data"]["train"] + config["data"]["validation"] == 200 and config["data"]["test"] == 40
    assert load_run(tmp_path / "r").held_out("test")[0] == [t.replace('"', "") for t in sample.texts[200:]]
    assert metrics.test_accuracy is not None
    with pytest.raises(RnnonnxError, match=r"--test-file replaces the held-out test split: drop --test 0.1"):
        api_train(tmp_path / "r2", data, test_file=own, test=0.1, epochs=1, **FAST)
    own.write_text("text,label\ngood film,pos\nodd one,maybe\n")
    with pytest.raises(RnnonnxError, match=r"test.csv: label\(s\) the training data does not have: 'maybe'"):
        api_train(tmp_path / "r3", data, test_file=own, epochs=1, **FAST)
    zero = api_train(tmp_path / "r4", data, test=0, epochs=1, **FAST)
    assert zero.test_accuracy is None and json.loads((tmp_path / "r4" / "config.json").read_text())["data"]["test"] == 0


def test_max_len_auto_is_a_capped_percentile_of_the_training_token_counts():
    from rnnonnx.config import AUTO_MAX_LEN_CAP, AUTO_MAX_LEN_FLOOR

    auto = TrainConfig()
    assert auto.max_len == "auto"
    assert auto.resolved_max_len(list(range(1, 101))) == 95  # the 95th of 1..100
    assert auto.resolved_max_len([3] * 50) == AUTO_MAX_LEN_FLOOR
    assert auto.resolved_max_len([10_000] * 20) == AUTO_MAX_LEN_CAP
    assert auto.resolved_max_len([]) == AUTO_MAX_LEN_FLOOR
    assert TrainConfig(max_len=7).resolved_max_len([10_000]) == 7


def test_run_records_the_resolved_max_len_and_its_tokenizer_uses_it(tmp_path):
    data = small_sample(200)
    long = LabelledTexts([text + " extra" * 40 for text in data.texts], data.labels, "long")
    train(TrainConfig(epochs=1, **FAST | {"max_len": "auto"}), tmp_path / "r", long, progress=False)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    tokenizer = json.loads((tmp_path / "r" / "tokenizer.json").read_text())
    assert config["training"]["max_len"] == "auto"
    assert 40 < config["training"]["resolved_max_len"] == tokenizer["max_len"] < 100
    assert load_run(tmp_path / "r").tokenizer.spec.max_len == tokenizer["max_len"]
    assert (config["training"]["batch_size"], config["training"]["lr"]) == (32, 2e-3), "batch_size auto, resolved"


def test_auto_pooling_with_auto_max_len_reads_32_tokens_as_long(tmp_path):
    data = small_sample(200)
    for words, expected in ((40, "max"), (14, "last")):  # a max_len of ~20 alone would have chosen max
        texts = [" ".join([text] * 60)[:0] + " ".join(f"w{i}" for i in range(words)) for text in data.texts]
        train(
            TrainConfig(epochs=1, **FAST | {"max_len": "auto"}),
            tmp_path / str(words),
            LabelledTexts(texts, data.labels, "x"),
            progress=False,
        )
        assert json.loads((tmp_path / str(words) / "config.json").read_text())["model"]["pooling"] == expected


def test_ngram_buckets_auto_adds_the_bag_for_long_texts_only():
    from rnnonnx.config import AUTO_NGRAM_BUCKETS, AUTO_NGRAM_MEDIAN_TOKENS
    from rnnonnx.training import resolve_max_len

    auto = TrainConfig()
    assert auto.resolved_ngram_buckets([AUTO_NGRAM_MEDIAN_TOKENS + 1] * 3 + [1] * 2) == AUTO_NGRAM_BUCKETS
    assert auto.resolved_ngram_buckets([AUTO_NGRAM_MEDIAN_TOKENS + 1] * 5, linear=True) == 0
    assert auto.resolved_ngram_buckets([AUTO_NGRAM_MEDIAN_TOKENS] * 3 + [500] * 2) == 0
    assert TrainConfig(ngram_buckets=7).resolved_ngram_buckets([1000]) == 7
    long_texts = [" ".join(f"w{i}" for i in range(40))] * 5
    assert resolve_max_len(auto, long_texts)[1].ngram_buckets == 0  # the linear member is on by default
    assert resolve_max_len(auto, long_texts, multi=True)[1].ngram_buckets == AUTO_NGRAM_BUCKETS
    assert resolve_max_len(TrainConfig(linear_weight=0), long_texts)[1].ngram_buckets == AUTO_NGRAM_BUCKETS
    assert resolve_max_len(auto, ["a short text here"] * 5)[1].ngram_buckets == 0
    assert resolve_max_len(TrainConfig(ngram_buckets="0"), long_texts)[1].ngram_buckets == 0


def test_an_imbalanced_run_is_logit_adjusted_by_its_training_shares(tmp_path, capsys):
    from rnnonnx.config import LOGIT_ADJUSTMENT
    from rnnonnx.model import prior_shift
    from rnnonnx.training import split_rows

    sample = small_sample(300)
    keep = [i for i, y in enumerate(sample.labels) if y == "neg" or i % 4 == 1]
    data = LabelledTexts([sample.texts[i] for i in keep], [sample.labels[i] for i in keep], "imbalanced")
    train(TrainConfig(epochs=1, refit=False, **FAST), tmp_path / "r", data, progress=True)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    shifts = config["model"]["logit_shift"]
    assert f"logit adjustment 0.25: class logits shifted by {min(shifts):+.3f} (most frequent)" in capsys.readouterr().err
    counts = [split_rows(data, TrainConfig(**FAST)).train[1].count(name) for name in ("neg", "pos")]
    assert config["training"]["logit_adjustment"] == LOGIT_ADJUSTMENT
    assert config["model"]["logit_shift"] == pytest.approx(list(prior_shift(counts, LOGIT_ADJUSTMENT)))
    assert config["model"]["logit_shift"][1] > 0, "the rarer class is lifted"
    run = load_run(tmp_path / "r")
    assert run.model.config.logit_shift == pytest.approx(tuple(config["model"]["logit_shift"]))
    train(TrainConfig(epochs=1, refit=False, class_weight="balanced", **FAST), tmp_path / "w", data, progress=False)
    weighted = json.loads((tmp_path / "w" / "config.json").read_text())
    assert weighted["training"]["logit_adjustment"] == 0.0 and weighted["model"]["logit_shift"] == []

"""Training options: every one validated in one place, the model config derived from them."""

from __future__ import annotations

import math

import pytest

from rnnonnx.config import MAX_SEED, MAX_WIDTH, ModelConfig, TrainConfig
from rnnonnx.errors import RnnonnxError
from tests.conftest import run_cli

BAD = [
    ({"lr": math.nan}, "lr must be a finite number"),
    ({"lr": math.inf}, "lr must be a finite number"),
    ({"lr": 0.0}, r"lr must be in \(0, 10\]"),
    ({"dropout": math.nan}, "dropout must be a finite number"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"validation": math.nan}, "validation must be a finite number"),
    ({"validation": 0.6, "test": 0.4}, "must leave rows to train on"),
    ({"seed": -5}, "seed must be between 0"),
    ({"seed": MAX_SEED + 1}, "seed must be between 0"),
    ({"hidden": 99999999999}, f"hidden must be between 1 and {MAX_WIDTH}"),
    ({"embed_dim": 0}, "embed_dim must be between 1"),
    ({"layers": 9}, "layers must be between 1 and 8"),
    ({"members": 0}, "members must be between 1 and 16"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"epochs": "many"}, "epochs must be an integer, not 'many'"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"arch": "transformer"}, "arch must be one of rnn, lstm, gru"),
    ({"pooling": "mean"}, "pooling must be one of auto, last, max, concat"),
    ({"monitor": "val_f1"}, "monitor must be one of"),
    ({"analyzer": "bpe"}, "analyzer must be one of"),
    ({"device": "tpu"}, "device must be one of"),
    ({"bidirectional": "yes"}, "bidirectional and baseline must be true or false"),
    ({"class_weight": "spam"}, "class_weight must be 'balanced' or label=weight pairs like 'spam=5,ham=1', not 'spam'"),
    ({"class_weight": "=3"}, "class_weight must be 'balanced' or label=weight pairs"),
    ({"class_weight": "spam=lots"}, "class_weight: weight of 'spam' is not a number: 'lots'"),
    ({"class_weight": "spam=0"}, r"class_weight of 'spam' must be in \(0, 1e\+06\]"),
    ({"class_weight": "spam=nan"}, "class_weight of 'spam' must be a finite number"),
    ({"class_weight": {}}, "class_weight must be 'balanced', a label=weight mapping or none"),
    ({"class_weight": 3}, "class_weight must be 'balanced', a label=weight mapping or none"),
    ({"class_weight": {"spam": -1}}, r"class_weight of 'spam' must be in \(0"),
    ({"vectors": ""}, "vectors must be the path of a vectors file"),
    ({"vectors": 3}, "vectors must be the path of a vectors file"),
    ({"freeze_embeddings": True}, "freeze_embeddings needs vectors"),
    ({"refit": "yes"}, "refit must be true, false or 'auto', not 'yes'"),
    ({"freeze_embeddings": "yes"}, "freeze_embeddings must be true or false"),
    ({"autotune": "soon"}, "autotune: a duration like 90s, 10m or 1h, not 'soon'"),
    ({"max_len": "long"}, "max_len must be an integer, not 'long'"),
    ({"max_len": 0}, "max_len must be between 1"),
    ({"ngram_buckets": -1}, "ngram_buckets must be between 0"),
    ({"ngram_buckets": 1.5}, "ngram_buckets must be an integer"),
    ({"branch_dropout": 1.0}, r"branch_dropout must be in \[0, 1\)"),
    ({"batch_size": "big"}, "batch_size must be an integer, not 'big'"),
    ({"batch_size": 0}, "batch_size must be between 1"),
]


@pytest.mark.parametrize(("options", "message"), BAD)
def test_bad_options_are_refused_with_one_line(options, message):
    with pytest.raises(RnnonnxError, match=message) as caught:
        TrainConfig(**options)
    assert "\n" not in str(caught.value)


def test_defaults_are_valid_and_unknown_options_are_named():
    assert TrainConfig() == TrainConfig.from_options({})
    with pytest.raises(RnnonnxError, match="unknown training option.*hiden"):
        TrainConfig.from_options({"hiden": 8})


def test_model_config_is_derived_from_the_training_config():
    config = TrainConfig(
        arch="gru", bidirectional=True, layers=2, embed_dim=12, hidden=10, dropout=0.1, members=2, ngram_buckets=64
    )
    model = config.model_config(vocab_size=50, num_classes=3, pooling="max")
    assert model == ModelConfig(
        vocab_size=50,
        num_classes=3,
        arch="gru",
        embed_dim=12,
        hidden=10,
        layers=2,
        bidirectional=True,
        dropout=0.1,
        pooling="max",
        members=2,
        ngram_buckets=64,
    )
    with pytest.raises(RnnonnxError, match="pooling must be one of last, max, concat"):
        config.model_config(50, 3, "auto")


def test_models_saved_before_pooling_and_members_existed_still_load():
    old = {
        "vocab_size": 10,
        "num_classes": 2,
        "arch": "lstm",
        "embed_dim": 4,
        "hidden": 4,
        "layers": 1,
        "bidirectional": False,
        "dropout": 0.3,
    }
    assert ModelConfig(**old).pooling == "last" and ModelConfig(**old).members == 1
    assert ModelConfig(**old).ngram_buckets == 0, "runs saved before the bag branch have none"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--lr", "nan"),
        ("--dropout", "nan"),
        ("--validation", "nan"),
        ("--seed", "-5"),
        ("--seed", "4294967296"),
        ("--hidden", "99999999999"),
        ("--lr", "inf"),
        ("--max-len", "long"),
        ("--ngram-buckets", "-3"),
        ("--batch-size", "many"),
    ],
)
def test_cli_refuses_bad_options_before_reading_data(tmp_path, flag, value):
    done = run_cli("train", "--data", str(tmp_path / "missing.csv"), flag, value, "--out", str(tmp_path / "run"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ") and "missing.csv" not in done.stderr


def test_max_len_reads_the_command_lines_digits():
    assert TrainConfig(max_len="48").max_len == 48 and TrainConfig(max_len="auto").max_len == "auto"


def test_batch_size_auto_grows_with_the_training_rows_and_scales_the_learning_rate():
    auto = TrainConfig(lr=1e-3)
    assert auto.batch_size == "auto" and TrainConfig(batch_size="48").batch_size == 48
    assert auto.resolved_batch(0) == (32, 1e-3) and auto.resolved_batch(11_999) == (32, 1e-3)
    assert auto.resolved_batch(12_000) == (64, pytest.approx(1e-3 * math.sqrt(2)))
    assert auto.resolved_batch(24_000) == (128, pytest.approx(2e-3)) and auto.resolved_batch(10**9) == (128, pytest.approx(2e-3))
    assert TrainConfig(batch_size=16, lr=1e-3).resolved_batch(10**6) == (16, 1e-3), "a batch size given is taken as is"


def test_refit_auto_refits_below_the_row_threshold_and_a_given_choice_stands():
    from rnnonnx.config import MANY_ROWS

    auto = TrainConfig()
    assert auto.refit == "auto" and auto.resolved_refit(0) and auto.resolved_refit(MANY_ROWS - 1)
    assert not auto.resolved_refit(MANY_ROWS) and not auto.resolved_refit(10**9)
    assert TrainConfig(refit=True).resolved_refit(10**9) and not TrainConfig(refit=False).resolved_refit(0)


def test_epochs_auto_takes_fewer_from_the_row_threshold_on_and_a_given_count_stands():
    from rnnonnx.config import AUTO_EPOCHS, MANY_ROWS, MANY_ROWS_EPOCHS

    auto = TrainConfig()
    assert auto.epochs == "auto" and MANY_ROWS_EPOCHS < AUTO_EPOCHS
    assert auto.resolved_epochs(0) == auto.resolved_epochs(MANY_ROWS - 1) == AUTO_EPOCHS
    assert auto.resolved_epochs(MANY_ROWS) == auto.resolved_epochs(10**9) == MANY_ROWS_EPOCHS
    assert TrainConfig(epochs="7").resolved_epochs(10**9) == 7 and TrainConfig(epochs=40).resolved_epochs(0) == 40


def test_class_weights_balanced_explicit_and_unknown_labels():
    assert TrainConfig(class_weight="spam=5, ham = 1").class_weight == {"spam": 5.0, "ham": 1.0}
    assert TrainConfig(class_weight="a=b=2").class_weight == {"a=b": 2.0}  # a label may hold '='
    labels, counts = ["ham", "spam", "eggs"], [90, 10, 20]
    assert TrainConfig().class_weights(labels, counts) is None
    # scikit-learn's "balanced": rows / (classes * rows of the class).
    assert TrainConfig(class_weight="balanced").class_weights(labels, counts) == pytest.approx([120 / 270, 120 / 30, 120 / 60])
    assert TrainConfig(class_weight={"spam": 5}).class_weights(labels, counts) == [1.0, 5.0, 1.0]
    with pytest.raises(RnnonnxError, match="class_weight names label.*'spma'.*the labels are 'ham', 'spam', 'eggs'"):
        TrainConfig(class_weight="spma=5").class_weights(labels, counts)
    assert TrainConfig.from_options(TrainConfig(class_weight="spam=2").to_dict()).class_weight == {"spam": 2.0}


def test_cli_names_an_unknown_class_weight_label(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"good film number {i},pos\nbad film number {i},neg\n" for i in range(10)))
    done = run_cli("train", "--data", str(data), "--class-weight", "spam=5", "--members", "1", "--out", str(tmp_path / "run"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == "Error: class_weight names label(s) the data does not have: 'spam' (the labels are 'neg', 'pos')"
    )
    assert not (tmp_path / "run").exists()


def test_the_embedding_size_follows_the_vectors_file_unless_given():
    assert TrainConfig().embed_dim == TrainConfig(embed_dim=None).embed_dim == 64
    assert TrainConfig(vectors="wiki.vec").embed_dim is None  # the file decides, at training
    assert TrainConfig(vectors="wiki.vec", embed_dim=300).embed_dim == 300  # checked against the file then


def test_logit_adjustment_auto_strength_and_bad_values():
    from rnnonnx.config import LOGIT_ADJUSTMENT

    assert TrainConfig().resolved_logit_adjustment(False) == LOGIT_ADJUSTMENT > 0
    assert TrainConfig(class_weight="balanced").resolved_logit_adjustment(False) == 0.0, "class weights move the vote already"
    assert TrainConfig(logit_adjustment="0.5").resolved_logit_adjustment(False) == 0.5  # the command line's spelling
    assert TrainConfig(logit_adjustment=0.5, class_weight="balanced").resolved_logit_adjustment(False) == 0.5
    assert TrainConfig().resolved_logit_adjustment(True) == 0.0
    assert TrainConfig(logit_adjustment=0).resolved_logit_adjustment(True) == 0.0
    with pytest.raises(RnnonnxError, match="--logit-adjustment is for multi-class models"):
        TrainConfig(logit_adjustment=1.0).resolved_logit_adjustment(True)
    for bad in ("-0.1", 2.5, "lots", float("nan"), True):
        with pytest.raises(RnnonnxError, match="logit_adjustment must be"):
            TrainConfig(logit_adjustment=bad)

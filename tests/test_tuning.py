"""--autotune: durations, the budget, what the search records, reproducibility, the missing extra."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch

from rnnonnx.config import TrainConfig, parse_duration
from rnnonnx.errors import RnnonnxError
from rnnonnx.fitting import FitJob, OutOfTime, fit_member
from rnnonnx.text import Tokenizer, TokenizerSpec
from rnnonnx.training import build_vocab, resolve_batch, resolve_max_len, split_rows, train_run
from rnnonnx.tuning import SEARCHED, autotune, length_choices, summary
from tests.conftest import run_cli, small_sample

pytest.importorskip("optuna")

FIXED = dict(embed_dim=8, hidden=8, max_len=16, epochs=2, patience=1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), ("1d", 86400.0), (45, 45.0)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds == TrainConfig(autotune=text).autotune


@pytest.mark.parametrize("text", ["", "m", "10x", "ten minutes", "-5m", "0", "0s", "nan", "inf", "30d", True])
def test_bad_durations_are_refused_in_one_line(text):
    with pytest.raises(RnnonnxError, match="autotune") as caught:
        TrainConfig(autotune=text)
    assert "\n" not in str(caught.value)


def test_cli_refuses_a_bad_duration_before_reading_data(tmp_path):
    result = run_cli("train", "--autotune", "10 minutes", "--data", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "r"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["Error: autotune: a duration like 90s, 10m or 1h, not '10 minutes'"]


def test_max_len_choices_follow_the_training_texts():
    assert length_choices(torch.tensor([5, 10, 20, 30]), 64) == [16, 32, 64]
    assert length_choices(torch.tensor([3000] * 10), 64) == [16, 32, 64, 128, 256, 512, 1024]
    assert length_choices(torch.tensor([100] * 10), 48) == [16, 32, 48, 64, 128]


def _search(config: TrainConfig, n: int = 120, max_trials: int | None = None, fixed=("embed_dim", "hidden", "max_len")):
    data = small_sample(n)
    rows = split_rows(data, config)
    _, config = resolve_max_len(config, rows.train[0])  # as train_run does: analyzer and ngram_buckets "auto" decided
    spec = TokenizerSpec(max_len=config.max_len)
    tokenizer = Tokenizer(spec, build_vocab(rows.train[0], spec))
    return autotune(config, rows, tokenizer, ["neg", "pos"], None, torch.device("cpu"), fixed, False, max_trials)


def test_the_search_is_reproducible_and_starts_from_the_configured_recipe():
    config = TrainConfig(autotune=600, seed=3, **FIXED)
    first, second = (_search(config, max_trials=3) for _ in range(2))
    assert first.record["trials"] == 3
    assert [(t["params"], t.get("val_accuracy")) for t in first.record["history"]] == [
        (t["params"], t.get("val_accuracy")) for t in second.record["history"]
    ]
    assert first.record["best_params"] == second.record["best_params"]
    start = first.record["history"][0]["params"]  # the configured recipe, "auto" pooling and batch size resolved
    resolved = resolve_batch(config, 0)
    assert resolved.batch_size == 32 and resolved.lr == config.lr
    assert start == {name: getattr(resolved, name) for name in start if name != "pooling"} | {"pooling": start["pooling"]}
    assert set(start) == set(SEARCHED) - {"embed_dim", "hidden", "max_len"} and start["pooling"] in ("last", "max")
    assert all(len(t["curve"]) >= 1 for t in first.record["history"])  # each epoch's validation accuracy went to the pruner
    best = first.record["history"][first.record["best_trial"]]
    assert (
        best["val_accuracy"]
        == first.record["best_val_accuracy"]
        == max(t.get("val_accuracy", -1) for t in first.record["history"])
    )
    assert len(first.fits) == first.config.members and first.tokenizer.spec.max_len == 16


def test_a_fit_past_its_deadline_stops_after_the_current_batch():
    config = TrainConfig(epochs=50, patience=50, batch_size=8, ngram_buckets=0, **{k: FIXED[k] for k in ("embed_dim", "hidden")})
    model = config.model_config(30, 2, "last")
    ids = torch.randint(2, 30, (64, 10))
    epochs = []
    job = FitJob(model, config, ids, torch.randint(0, 2, (64,)), ids[:8], torch.zeros(8, dtype=torch.long), False)
    job.on_epoch, job.deadline = (lambda member, row: epochs.append(row)), time.monotonic()
    with pytest.raises(OutOfTime):
        fit_member(job, 0, torch.device("cpu"), live=False)
    assert epochs == []


@pytest.mark.slow
def test_the_budget_is_hard_and_a_trial_it_cuts_still_counts():
    budget = 30
    # 3 members x a million epochs: the first trial cannot finish within the budget on any machine
    sizes = {k: FIXED[k] for k in ("embed_dim", "hidden", "max_len")}
    config = TrainConfig(autotune=budget, epochs=10**6, patience=10**6, **sizes)
    started = time.monotonic()
    tuned = _search(config, n=400, fixed=("embed_dim", "hidden", "max_len", "members"))
    assert time.monotonic() - started < budget + 5, "the search ran far past its budget"
    record = tuned.record
    assert record["trials"] == 1 and record["stopped_by_budget"] == 1 and record["best_stopped_by_budget"]
    stopped = record["history"][0]
    assert 1 <= stopped["members_done"] == tuned.config.members == len(tuned.fits) <= 3
    assert stopped["val_accuracy"] == record["best_val_accuracy"] and len(stopped["curve"]) >= 1


def test_a_budget_too_short_for_one_epoch_is_a_clear_error():
    with pytest.raises(RnnonnxError, match=r"--autotune 0.001s: the time ran out before a trial finished one epoch"):
        _search(TrainConfig(autotune=0.001, **FIXED))


@pytest.mark.slow
def test_a_run_with_autotune_records_its_choice_and_keeps_what_the_user_set(tmp_path):
    budget = 45
    started = time.monotonic()
    metrics = train_run(
        TrainConfig(autotune=f"{budget}s", arch="gru", members=1, **FIXED),
        tmp_path / "r",
        small_sample(160),
        False,
        fixed={"arch", "members", *FIXED},
    )
    elapsed = time.monotonic() - started
    record = metrics.autotune
    assert record["seconds"] <= budget + 5 and elapsed < budget + 60
    assert record["kept"] == {"arch": "gru", "embed_dim": 8, "hidden": 8, "max_len": 16, "members": 1}
    assert set(record["best_params"]) == set(SEARCHED) - set(record["kept"])
    assert record["trials"] == record["complete"] + record["pruned"] + record["failed"] + record["stopped_by_budget"] >= 1
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    for name, value in record["best_params"].items():  # the run is the chosen recipe
        assert config["training"][name] == value
    assert config["model"]["arch"] == "gru" and config["model"]["members"] == 1
    assert config["training"]["autotune"] == budget and metrics.refit is not None
    assert config["autotune"]["best_params"] == record["best_params"] and config["autotune"]["kept"] == record["kept"]
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())["autotune"]
    assert saved["best_params"] == record["best_params"] and saved["best_val_accuracy"] == record["best_val_accuracy"]
    assert "kept as set: --arch gru" in summary(record) and "--lr" in summary(record)


def test_without_optuna_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(RnnonnxError, match=r'pip install "rnnonnx\[tune\]"'):
        _search(TrainConfig(autotune=5, **FIXED))

"""The linear member: tf-idf features from ids, its fit, the blend weight, and its place in a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnonnx import config as config_module
from rnnonnx import linear as linear_module
from rnnonnx.config import ModelConfig, TrainConfig
from rnnonnx.data import LabelledTexts
from rnnonnx.errors import RnnonnxError
from rnnonnx.linear import KEY_PRIME, BigramIndex, LinearMember, batch_for, choose_weight, fit_linear, key_of, slot_of
from rnnonnx.model import NGRAM_PRIME, Ensemble, build_model
from rnnonnx.run import load_run
from rnnonnx.training import train_run

SMALL = dict(embed_dim=8, hidden=8, max_len=20, members=1, epochs=2, device="cpu")


def member(vocab: int = 12, buckets: int = 16, classes: int = 3) -> LinearMember:
    torch.manual_seed(0)
    linear = LinearMember(vocab, buckets, classes, NGRAM_PRIME)
    with torch.no_grad():
        linear.table.weight.normal_()
        linear.bias.normal_()
    return linear


def test_idf_is_scikit_learns_smoothed_document_frequency():
    linear = member()
    ids = torch.tensor([[2, 3, 3, 0], [2, 4, 0, 0], [5, 0, 0, 0]])
    linear.set_idf(ids)
    n = 3
    for token, df in ((2, 2), (3, 1), (4, 1), (5, 1), (6, 0)):
        assert math.isclose(float(linear.idf[token]), math.log((1 + n) / (1 + df)) + 1, rel_tol=1e-3)  # stored in fp16
    assert float(linear.idf[0]) == 0.0  # padding never weighs
    bigram = 12 + (2 * NGRAM_PRIME + 3) % 16  # "2 3" occurs in one text (twice "3 3" is another bigram)
    assert math.isclose(float(linear.idf[bigram]), math.log(4 / 2) + 1, rel_tol=1e-3)  # stored in fp16


def test_logits_do_not_depend_on_padding_or_batch_mates():
    linear = member()
    linear.set_idf(torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0]]))
    alone = linear(torch.tensor([[2, 3, 9]]))
    padded = linear(torch.tensor([[2, 3, 9, 0, 0, 0], [4, 5, 6, 7, 8, 11]]))
    assert torch.allclose(alone[0], padded[0], atol=1e-6)
    assert not torch.allclose(padded[0], padded[1])


def test_logits_are_the_l2_normalised_tfidf_sum():
    linear = member(vocab=6, buckets=4, classes=2)
    linear.set_idf(torch.tensor([[2, 3], [2, 4]]))
    features = [2, 3, 6 + (2 * NGRAM_PRIME + 3) % 4]  # tokens 2, 3 and the bigram "2 3"
    weights = linear.idf[features].float()
    expected = (linear.table.weight[features] * (weights / weights.norm()).unsqueeze(1)).sum(0) + linear.bias
    assert torch.allclose(linear(torch.tensor([[2, 3]]))[0], expected, atol=1e-6)


def known_slots(index: BigramIndex, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return slot_of(torch.from_numpy(index.keys), torch.from_numpy(index.shifts), key_of(first, second))


@pytest.mark.parametrize("count", [0, 1, 7, 5000])
def test_bigram_index_finds_every_known_bigram_in_a_slot_of_its_own(count):
    vocab = 3000
    rng = np.random.default_rng(count)
    keys = rng.choice(np.arange(vocab, vocab * vocab), size=count, replace=False)  # second ids >= 1: never padding
    keys = keys[keys % vocab != 0]
    first, second = torch.from_numpy(keys // vocab), torch.from_numpy(keys % vocab)
    index = BigramIndex.of_keys(key_of(first, second).numpy())
    assert len(index.keys) >= len(keys) and len(index.shifts) >= 1
    assert sorted(index.keys[index.keys >= 0].tolist()) == sorted(key_of(first, second).tolist())
    slot, known = known_slots(index, first, second)
    assert known.all() and len(set(slot.tolist())) == len(keys)
    others = torch.from_numpy(rng.integers(0, vocab, size=(2, 2000)))
    unknown = ~np.isin((others[0] * vocab + others[1]).numpy(), keys)
    assert not known_slots(index, others[0], others[1])[1].numpy()[unknown].any()
    assert not known_slots(index, torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))[1].any()


def test_the_exact_index_keeps_the_bigrams_of_two_rows_and_reads_no_other():
    ids = torch.tensor([[2, 3, 5, 0], [2, 3, 0, 0], [3, 5, 4, 0], [4, 2, 0, 0]])
    linear = LinearMember.exact(ids, 8, 2, NGRAM_PRIME)
    assert linear.groups >= 1 and sorted(linear.bigram_keys[linear.bigram_keys >= 0].tolist()) == [
        2 * KEY_PRIME + 3,
        3 * KEY_PRIME + 5,
    ]
    features = linear.features(torch.tensor([[2, 3, 5, 4, 2]]))[0, 5:]  # the bigram rows
    assert (features[:2] >= 8).all() and features[0] != features[1]  # "2 3" and "3 5"
    assert (features[2:] == 0).tolist() == [True, True, True]  # "5 4" (one row), "4 2" (one row), the end
    linear.set_idf(ids)
    assert math.isclose(float(linear.idf[int(features[0])]), math.log(5 / 3) + 1, rel_tol=1e-3)
    fresh = linear.untrained()
    assert torch.equal(fresh.bigram_keys, linear.bigram_keys) and torch.equal(fresh.bigram_shifts, linear.bigram_shifts)
    assert float(fresh.idf.abs().sum()) == 0.0


def test_exact_logits_do_not_depend_on_padding_or_batch_mates():
    ids = torch.tensor([[2, 3, 9, 4], [2, 3, 9, 0], [6, 7, 2, 3]])
    linear = LinearMember.exact(ids, 12, 3, NGRAM_PRIME)
    linear.set_idf(ids)
    with torch.no_grad():
        linear.table.weight.normal_()
    alone = linear(torch.tensor([[2, 3, 9]]))
    padded = linear(torch.tensor([[2, 3, 9, 0, 0, 0], [4, 5, 6, 7, 8, 11]]))
    assert torch.allclose(alone[0], padded[0], atol=1e-6)
    assert not torch.allclose(padded[0], padded[1])


def test_choose_weight_takes_the_best_validation_accuracy_then_the_lower_loss():
    targets = torch.tensor([0, 1, 1, 0])
    good = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    bad = torch.tensor([[0.4, 0.6], [0.7, 0.3], [0.6, 0.4], [0.3, 0.7]])
    assert choose_weight(good, bad, targets)[0] == 0.0
    weight, tried = choose_weight(bad, good, targets)
    assert weight == 0.9 and tried["0"] == 0.0 and tried["0.9"] == 1.0
    # equal accuracy everywhere: the weight with the lower cross-entropy
    weight, _ = choose_weight(good, torch.tensor([[0.99, 0.01], [0.01, 0.99], [0.01, 0.99], [0.99, 0.01]]), targets)
    assert weight == 0.9


def test_choose_weight_reads_the_blend_through_the_logit_shift():
    targets = torch.tensor([1, 1, 0])
    recurrent = torch.tensor([[0.6, 0.4], [0.55, 0.45], [0.9, 0.1]])  # right on the last row only
    linear = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.95, 0.05]])  # wrong on the first row
    weight, tried = choose_weight(recurrent, linear, targets)
    assert tried["0"] == pytest.approx(1 / 3) and weight > 0.5
    # class 1 lifted by a factor exp(0.5) against class 0: the recurrent members alone are right everywhere
    assert set(choose_weight(recurrent, linear, targets, (-0.25, 0.25))[1].values()) == {1.0}


def test_fit_learns_a_separable_task_and_a_refit_runs_its_epochs():
    rng = np.random.default_rng(0)
    targets = torch.from_numpy(rng.integers(0, 2, size=200))
    ids = torch.cat([2 + targets.unsqueeze(1), torch.from_numpy(rng.integers(4, 12, size=(200, 5)))], dim=1)  # token 2 or 3
    fresh = LinearMember(12, 16, 2, NGRAM_PRIME)
    fit = fit_linear(fresh, (ids[:150], targets[:150]), (ids[150:], targets[150:]), torch.device("cpu"), 0)
    assert fit.val_accuracy > 0.95 and 1 <= fit.best_epoch
    refit = fit_linear(LinearMember(12, 16, 2, NGRAM_PRIME), (ids, targets), None, torch.device("cpu"), 0, epochs=2)
    assert refit.best_epoch == 2 and math.isnan(refit.val_accuracy)


def test_a_fit_on_one_thread_equals_the_fit_on_two_to_the_bit():
    """A run fits the linear member on one thread while the recurrent members train
    (rnnonnx.workers.fit_members), where it used to take every thread after them: sized so that
    the fit's ops split their work across threads (a batch's 64 x 120 x 30 products)."""
    rng = np.random.default_rng(0)
    targets = torch.from_numpy(rng.integers(0, 30, size=2000))
    ids = torch.from_numpy(rng.integers(2, 3000, size=(2000, 60)))
    ids[:, :3] = targets.unsqueeze(1) + 2  # learnable
    threads = torch.get_num_threads()
    fits = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            member = LinearMember(3000, 4096, 30, NGRAM_PRIME)
            fits.append(fit_linear(member, (ids, targets), None, torch.device("cpu"), 0, epochs=2))
    finally:
        torch.set_num_threads(threads)
    one, two = (fit.member.state_dict() for fit in fits)
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_the_batch_grows_with_the_training_rows_and_the_rate_with_its_square_root(monkeypatch):
    assert [batch_for(rows)[0] for rows in (0, 11_999, 12_000, 24_000, 10**7)] == [64, 64, 128, 256, 256]
    assert batch_for(0)[1] == 0.02 and batch_for(24_000)[1] == pytest.approx(0.04)
    monkeypatch.setattr(config_module, "AUTO_BATCH_ROWS", 50)  # 150 rows: two doublings
    sizes = []
    original = linear_module._batches
    monkeypatch.setattr(linear_module, "_batches", lambda count, gen, size=64: sizes.append(size) or original(count, gen, size))
    rng = np.random.default_rng(0)
    targets = torch.from_numpy(rng.integers(0, 2, size=150))
    ids = torch.from_numpy(rng.integers(2, 12, size=(150, 5)))
    fit = fit_linear(LinearMember(12, 16, 2, NGRAM_PRIME), (ids, targets), None, torch.device("cpu"), 0, epochs=1)
    assert sizes == [256] and (fit.batch, fit.lr) == (256, pytest.approx(0.04))
    fit_linear(LinearMember(12, 16, 2, NGRAM_PRIME), (ids, targets), None, torch.device("cpu"), 0, epochs=1, batch=(32, 0.01))
    assert sizes[-1] == 32


def test_a_refit_repeats_the_fits_batch_on_its_extra_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "AUTO_BATCH_ROWS", 130)  # 128 training rows: batch 64; with validation, 144: 128
    sizes = []
    original = linear_module._batches

    def batches(count: int, generator: torch.Generator | None, size: int = 64) -> list[torch.Tensor]:
        if generator is not None:  # a training epoch, not a scoring pass
            sizes.append(size)
        return original(count, generator, size)

    monkeypatch.setattr(linear_module, "_batches", batches)
    metrics = train_run(TrainConfig(**SMALL | {"max_len": 10, "lr": 1e-2}), tmp_path / "run", keyword_data(), progress=False)
    assert metrics.refit["linear_epochs"] >= 1 and metrics.linear["batch_size"] == 64
    assert len(sizes) > metrics.refit["linear_epochs"] and set(sizes) == {64}


def test_ensemble_blends_the_members_and_the_linear_member():
    config = ModelConfig(30, 2, "lstm", 8, 8, 1, False, 0.0, members=2, linear_weight=0.25, linear_buckets=8, recurrent_len=3)
    model = build_model(config).eval()
    assert isinstance(model, Ensemble) and model.linear is not None
    ids = torch.tensor([[2, 3, 4, 5, 6, 7], [8, 9, 0, 0, 0, 0]])
    with torch.no_grad():
        recurrent = torch.stack([torch.softmax(m(ids[:, :3]), -1) for m in model.members]).mean(0)
        expected = 0.75 * recurrent + 0.25 * torch.softmax(model.linear(ids), -1)
        assert torch.allclose(torch.softmax(model(ids), -1), expected, atol=1e-6)
        # the recurrent members read only the first recurrent_len ids
        changed = ids.clone()
        changed[0, 4] = 11
        assert torch.allclose(model.members[0](changed), model.members[0](ids))


def test_config_checks_the_linear_options():
    assert TrainConfig(linear_weight="0.3").linear_weight == 0.3
    assert TrainConfig(linear_max_len="100").linear_max_len == 100
    for bad in ("0.95", "many", -0.1):
        with pytest.raises(RnnonnxError, match="linear_weight"):
            TrainConfig(linear_weight=bad)
    with pytest.raises(RnnonnxError, match="linear_buckets"):
        TrainConfig(linear_buckets=0)
    assert TrainConfig().linear_buckets == "auto" and TrainConfig(linear_buckets="64").linear_buckets == 64
    with pytest.raises(RnnonnxError, match="linear_groups"):
        ModelConfig(30, 2, "lstm", 8, 8, 1, False, 0.0, linear_weight=0.5, linear_buckets=8, linear_groups=-1)
    with pytest.raises(RnnonnxError, match="multi-class"):
        ModelConfig(30, 2, "lstm", 8, 8, 1, False, 0.0, multi_label=True, linear_weight=0.5, linear_buckets=8)
    assert TrainConfig(linear_max_len=10).resolved_linear_max_len([5, 50, 500], 20) == 20  # never under max_len
    assert TrainConfig().resolved_linear_max_len(list(range(1, 10001)), 256) == 4096  # the cap


def keyword_data(rows: int = 160) -> LabelledTexts:
    """Labels set by one word far past the recurrent members' window: only a reader of the whole
    text can tell them apart."""
    rng = np.random.default_rng(1)
    filler = [f"w{k}" for k in range(8)]
    texts, labels = [], []
    for i in range(rows):
        label = ["north", "south"][i % 2]
        words = list(rng.choice(filler, size=30)) + [label, label, label] + list(rng.choice(filler, size=3))
        texts.append(" ".join(words))
        labels.append(label)
    return LabelledTexts(texts, labels, "keywords")


def test_a_run_blends_a_linear_member_that_reads_past_max_len(tmp_path):
    metrics = train_run(TrainConfig(**SMALL | {"max_len": 10, "lr": 1e-2}), tmp_path / "run", keyword_data(), progress=False)
    record = metrics.linear
    assert record["weight"] > 0 and record["max_len"] == 36 and record["member_val_accuracy"] >= 0.9
    assert record["bigrams"].endswith(f"known bigrams in {record['buckets']} rows")
    assert record["val_accuracy_by_weight"]["0"] < 0.8 <= metrics.val_accuracy
    assert metrics.refit["linear_epochs"] == record["best_epoch"]
    run = load_run(tmp_path / "run")
    assert run.tokenizer.spec.max_len == 36 and run.model.config.recurrent_len == 10
    assert run.config["training"]["resolved_max_len"] == 10
    assert run.model.config.linear_weight == record["weight"]
    assert run.model.config.linear_groups == run.model.linear.groups > 0  # the exact index, saved and loaded
    assert run.model.config.linear_buckets == record["buckets"] == len(run.model.linear.bigram_keys)


def test_linear_buckets_n_hashes_the_bigrams(tmp_path):
    config = TrainConfig(**SMALL | {"linear_weight": 0.4, "linear_buckets": 64, "refit": False})
    metrics = train_run(config, tmp_path / "run", keyword_data(60), progress=False)
    assert metrics.linear["bigrams"] == "bigrams hashed into 64 rows"
    model = load_run(tmp_path / "run").model
    assert model.config.linear_buckets == 64 and model.config.linear_groups == 0 and not hasattr(model.linear, "bigram_keys")


def test_weight_zero_leaves_the_member_out(tmp_path):
    metrics = train_run(TrainConfig(**SMALL | {"linear_weight": 0}), tmp_path / "run", keyword_data(60), progress=False)
    assert metrics.linear is None
    run = load_run(tmp_path / "run")
    assert run.model.config.linear_weight == 0 and not any(k.startswith("linear") for k in run.model.state_dict())
    assert "linear" not in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_a_given_weight_is_kept(tmp_path):
    metrics = train_run(
        TrainConfig(**SMALL | {"linear_weight": 0.4, "refit": False}), tmp_path / "run", keyword_data(60), progress=False
    )
    assert metrics.linear["weight"] == 0.4 and not metrics.linear["chosen_on_validation"]
    assert load_run(tmp_path / "run").model.config.linear_weight == 0.4


def test_the_bundle_matches_pytorch_past_the_recurrent_window(tmp_path):
    import rnnonnx

    train_run(
        TrainConfig(**SMALL | {"max_len": 10, "linear_weight": 0.5, "refit": False, "calibrate": False}),
        tmp_path / "run",
        keyword_data(),
        progress=False,
    )
    rnnonnx.export(tmp_path / "run", tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["linear_weight"] == 0.5 and manifest["model"]["recurrent_len"] == 10
    run = load_run(tmp_path / "run")
    texts = keyword_data(6).texts + ["north"]
    ids = torch.from_numpy(run.tokenizer.encode_batch(texts))
    from rnnonnx.storage import store_embeddings

    store_embeddings(run.model)  # the weights the bundle ships
    with torch.no_grad():
        expected = torch.softmax(run.model.eval()(ids), -1).numpy()
    for graph in ("ids", "text"):
        predictor = rnnonnx.load(tmp_path / "bundle", graph=graph)
        got = np.array([[p.probabilities[label] for label in run.labels] for p in predictor.predict(texts)])
        assert np.abs(got - expected).max() < 1e-5, graph


def test_a_run_saved_with_an_earlier_index_layout_loads_with_the_same_logits(tmp_path):
    """Runs saved before the current hash key a bigram ``a * vocab + b`` elsewhere: loading lays the
    index out anew, rows and idf with it."""
    from safetensors.torch import save_file

    from rnnonnx.run import CONFIG, WEIGHTS

    config = TrainConfig(**SMALL | {"linear_weight": 0.5, "refit": False})
    train_run(config, tmp_path / "run", keyword_data(60), progress=False)
    run = load_run(tmp_path / "run")
    linear, vocab = run.model.linear, run.model.linear.vocab_size
    ids = torch.from_numpy(run.tokenizer.encode_batch(keyword_data(20).texts))
    assert int((linear.features(ids)[:, ids.shape[1] :] > 0).sum()) > 0, "known bigrams are read"
    with torch.no_grad():
        expected = run.model(ids)
    state = {name: value.clone() for name, value in run.model.state_dict().items()}
    slots = torch.nonzero(linear.bigram_keys >= 0).flatten()
    earlier = len(linear.bigram_keys) - 1 - slots  # each bigram in another slot, keyed a * vocab + b
    keys = linear.bigram_keys[slots]
    state["linear.bigram_keys"] = torch.full_like(linear.bigram_keys, -1)
    state["linear.bigram_keys"][earlier] = keys // KEY_PRIME * vocab + keys % KEY_PRIME
    state["linear.bigram_shifts"] = torch.zeros(5, dtype=torch.int64)
    for name in ("linear.table.weight", "linear.idf"):
        state[name][vocab + earlier] = state[name][vocab + slots]
    save_file(state, str(tmp_path / "run" / WEIGHTS))
    saved = json.loads((tmp_path / "run" / CONFIG).read_text())
    saved["model"]["linear_groups"] = 5
    (tmp_path / "run" / CONFIG).write_text(json.dumps(saved))
    loaded = load_run(tmp_path / "run")
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids), expected, atol=1e-6)
    assert loaded.model.config.linear_buckets == loaded.config["model"]["linear_buckets"] == loaded.model.linear.buckets
    assert loaded.model.config.linear_groups == loaded.config["model"]["linear_groups"] == loaded.model.linear.groups

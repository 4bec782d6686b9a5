"""The PyTorch model: a text's prediction must not depend on what it is batched with."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rnnonnx.config import POOLINGS, ModelConfig
from rnnonnx.errors import RnnonnxError
from rnnonnx.model import NGRAM_PRIME, Dropout, Ensemble, ExportWrapper, TextClassifier, build_model

MATRIX = list(itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2], POOLINGS))
# (arch, bidirectional, layers, pooling, members, ngram_buckets): the bag-of-n-grams branch beside
# each pooling, alone and in an ensemble; 97 buckets for a 40-token vocabulary, so bigrams collide.
BAGS = [("lstm", False, 1, "last", 1, 97), ("gru", True, 2, "max", 1, 97), ("rnn", False, 1, "concat", 2, 97)]
ARCHS_ONLY = sorted({m[:3] for m in MATRIX})


def tiny_model(
    arch: str, bidirectional: bool, layers: int, pooling: str = "last", seed: int = 0, members: int = 1, ngram_buckets: int = 0
) -> TextClassifier | Ensemble:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=40,
        num_classes=3,
        arch=arch,
        embed_dim=8,
        hidden=6,
        layers=layers,
        bidirectional=bidirectional,
        dropout=0.3,
        pooling=pooling,
        members=members,
        ngram_buckets=ngram_buckets,
    )
    return build_model(config).eval()


def padded_batch(rng: np.random.Generator, batch: int, width: int) -> tuple[np.ndarray, list[int]]:
    ids = rng.integers(1, 40, size=(batch, width), dtype=np.int64)
    lengths = [int(n) for n in rng.integers(0, width + 1, size=batch)]
    lengths[0] = width
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return ids, lengths


@pytest.mark.parametrize(("arch", "bidirectional", "layers", "pooling"), MATRIX)
def test_padded_batch_equals_each_text_alone(arch, bidirectional, layers, pooling):
    wrapper = ExportWrapper(tiny_model(arch, bidirectional, layers, pooling)).eval()
    rng = np.random.default_rng(0)
    ids, lengths = padded_batch(rng, 9, 12)
    with torch.no_grad():
        together = wrapper(torch.from_numpy(ids))[1].numpy()
        alone = np.concatenate([wrapper(torch.from_numpy(ids[i : i + 1, : max(1, n)]))[1].numpy() for i, n in enumerate(lengths)])
    assert np.abs(together - alone).max() <= 1e-6


@pytest.mark.parametrize(("arch", "bidirectional", "layers", "pooling"), MATRIX)
def test_training_forward_equals_the_packed_one(arch, bidirectional, layers, pooling):
    """Training skips packing for a forward-only layer (padding after a text's steps cannot reach
    them): with dropout off its logits and gradients are those of the packed path evaluation and
    export take, padding and all-padding rows included."""
    model = tiny_model(arch, bidirectional, layers, pooling)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.rnn.dropout = 0.0  # between stacked layers
    ids, _ = padded_batch(np.random.default_rng(1), 9, 12)
    ids[3] = 0
    results = []
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        logits = model(torch.from_numpy(ids))
        logits.square().sum().backward()
        results.append((logits.detach(), model.rnn.weight_hh_l0.grad.clone()))
    assert (results[0][0] - results[1][0]).abs().max() <= 1e-6
    assert (results[0][1] - results[1][1]).abs().max() <= 1e-5


@pytest.mark.parametrize("pooling", POOLINGS)
def test_all_padding_row_reads_as_one_padding_token(pooling):
    wrapper = ExportWrapper(tiny_model("lstm", True, 1, pooling)).eval()
    with torch.no_grad():
        empty = wrapper(torch.zeros((1, 5), dtype=torch.int64))[1]
        single = wrapper(torch.zeros((1, 1), dtype=torch.int64))[1]
    assert torch.allclose(empty, single, atol=1e-7)


@pytest.mark.parametrize(("arch", "bidirectional", "layers"), ARCHS_ONLY)
def test_features_are_the_final_states_of_each_direction(arch, bidirectional, layers):
    """Reference: run the recurrent layers on the unpadded text and read ``h_n`` (for the
    backward direction, the state after reading the first token)."""
    model = tiny_model(arch, bidirectional, layers)
    ids = torch.tensor([[5, 6, 7, 8, 9, 0, 0]])
    with torch.no_grad():
        _, h_n = model.rnn(model.embedding(ids[:, :5]))
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n
        features = torch.cat([h_n[-2], h_n[-1]], dim=-1) if bidirectional else h_n[-1]
        assert torch.allclose(model(ids), model.head(features), atol=1e-6)


@pytest.mark.parametrize(("arch", "bidirectional", "layers"), ARCHS_ONLY)
def test_max_pooling_is_the_maximum_over_the_texts_own_steps(arch, bidirectional, layers):
    """Reference: the recurrent outputs of the unpadded text, maximum over time."""
    model = tiny_model(arch, bidirectional, layers, "max")
    ids = torch.tensor([[5, 6, 7, 8, 9, 0, 0]])
    with torch.no_grad():
        outputs, _ = model.rnn(model.embedding(ids[:, :5]))
        assert torch.allclose(model(ids), model.head(outputs.amax(dim=1)), atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_concat_pooling_is_the_final_states_and_the_maximum_side_by_side(bidirectional):
    model = tiny_model("gru", bidirectional, 1, "concat")
    ids = torch.tensor([[5, 6, 7, 8, 9, 0, 0]])
    with torch.no_grad():
        outputs, h_n = model.rnn(model.embedding(ids[:, :5]))
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1) if bidirectional else h_n[-1]
        assert torch.allclose(model(ids), model.head(torch.cat([last, outputs.amax(dim=1)], dim=-1)), atol=1e-6)


ENSEMBLES = [("lstm", False, 1, "last", 3), ("gru", True, 2, "max", 2)]


@pytest.mark.parametrize(("arch", "bidirectional", "layers", "pooling", "members"), ENSEMBLES)
def test_ensemble_probabilities_are_the_members_mean(arch, bidirectional, layers, pooling, members):
    ensemble = tiny_model(arch, bidirectional, layers, pooling, members=members)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == members
    ids, lengths = padded_batch(np.random.default_rng(2), 7, 12)
    ids = torch.from_numpy(ids)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(ids), dim=-1) for m in ensemble.members]).mean(dim=0)
        logits, probabilities = ExportWrapper(ensemble)(ids)
        alone = torch.cat([ExportWrapper(ensemble)(ids[i : i + 1, : max(1, n)])[1] for i, n in enumerate(lengths)])
    assert torch.allclose(probabilities, expected, atol=1e-6) and torch.allclose(alone, probabilities, atol=1e-6)
    assert torch.isfinite(logits).all()
    first, second = (torch.cat([p.flatten() for p in m.parameters()]) for m in ensemble.members[:2])
    assert not torch.equal(first, second), "members must start from different weights"


def test_one_member_is_a_plain_classifier():
    assert type(tiny_model("lstm", False, 1)) is TextClassifier


@pytest.mark.parametrize(
    "kwargs", [{"arch": "transformer"}, {"layers": 0}, {"dropout": 1.0}, {"pooling": "mean"}, {"members": 0}]
)
def test_bad_configs_are_refused(kwargs):
    valid = dict(vocab_size=10, num_classes=2, arch="lstm", embed_dim=4, hidden=4, layers=1, bidirectional=False, dropout=0.3)
    with pytest.raises(RnnonnxError):
        ModelConfig(**valid | kwargs)


@pytest.mark.parametrize("members", [1, 3])
def test_multi_label_probabilities_are_sigmoids_and_an_ensemble_averages_them(members):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=40,
        num_classes=3,
        arch="gru",
        embed_dim=8,
        hidden=6,
        layers=1,
        bidirectional=False,
        dropout=0.3,
        members=members,
        multi_label=True,
    )
    model = build_model(config).eval()
    ids = torch.from_numpy(padded_batch(np.random.default_rng(3), 6, 9)[0])
    with torch.no_grad():
        parts = model.members if members > 1 else [model]
        expected = torch.stack([torch.sigmoid(m(ids)) for m in parts]).mean(dim=0)
        logits, probabilities = ExportWrapper(model)(ids)
    assert torch.allclose(probabilities, expected, atol=1e-6) and torch.allclose(torch.sigmoid(logits), probabilities)
    assert not torch.allclose(probabilities.sum(dim=1), torch.ones(6), atol=1e-2), "one sigmoid per label, not a softmax"


@pytest.mark.parametrize(("arch", "bidirectional", "layers", "pooling", "members", "buckets"), BAGS)
def test_bag_branch_padded_batch_equals_each_text_alone(arch, bidirectional, layers, pooling, members, buckets):
    wrapper = ExportWrapper(tiny_model(arch, bidirectional, layers, pooling, members=members, ngram_buckets=buckets)).eval()
    ids, lengths = padded_batch(np.random.default_rng(3), 9, 12)
    with torch.no_grad():
        together = wrapper(torch.from_numpy(ids))[1].numpy()
        wider = wrapper(torch.from_numpy(np.pad(ids, ((0, 0), (0, 5)))))[1].numpy()
        alone = np.concatenate([wrapper(torch.from_numpy(ids[i : i + 1, : max(1, n)]))[1].numpy() for i, n in enumerate(lengths)])
    assert np.abs(together - alone).max() <= 1e-6 and np.abs(together - wider).max() <= 1e-6


def test_bag_is_the_mean_of_token_and_hashed_bigram_embeddings():
    """Reference: the fastText hidden vector written out for one text, ids 5 6 7 then padding."""
    model = tiny_model("lstm", False, 1, ngram_buckets=97)
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    with torch.no_grad():
        buckets = [(5 * NGRAM_PRIME + 6) % 97, (6 * NGRAM_PRIME + 7) % 97]
        vectors = [model.embedding.weight[i] for i in (5, 6, 7)] + [model.bigrams.weight[b] for b in buckets]
        expected = torch.stack(vectors).mean(dim=0)
        assert torch.allclose(model._bag(ids, model.embedding(ids))[0], expected, atol=1e-6)
        outputs, _ = model.rnn(model.embedding(ids[:, :3]))
        assert torch.allclose(model(ids), model.head(torch.cat([outputs[:, -1], expected.unsqueeze(0)], dim=-1)), atol=1e-6)


def test_bag_branch_counts_and_all_padding_rows():
    model = tiny_model("lstm", False, 1, ngram_buckets=97)
    assert model.bigrams.weight.shape == (97, 8) and model.head.in_features == 6 + 8
    assert tiny_model("lstm", False, 1).bigrams is None
    with torch.no_grad():
        empty = model._bag(torch.zeros((2, 4), dtype=torch.int64), model.embedding(torch.zeros((2, 4), dtype=torch.int64)))
    assert torch.equal(empty, torch.zeros_like(empty))


def test_branch_dropout_leaves_some_training_rows_to_the_bag_alone_and_nothing_at_inference():
    torch.manual_seed(0)
    config = ModelConfig(40, 3, "lstm", 8, 6, 1, False, 0.0, "max", ngram_buckets=97, branch_dropout=0.5)
    model = TextClassifier(config)
    ids = torch.from_numpy(padded_batch(np.random.default_rng(4), 32, 9)[0])
    with torch.no_grad():
        model.eval()
        bag_only = model.head(torch.cat([torch.zeros(32, 6), model._bag(ids, model.embedding(ids))], -1))
        recurrent = model(ids) - bag_only  # the recurrent features' share of the logits
        model.train()
        trained = model(ids)
    dropped = torch.isclose(trained, bag_only, atol=1e-5).all(dim=1)
    doubled = torch.isclose(trained, bag_only + 2 * recurrent, atol=1e-5).all(dim=1)
    assert (dropped | doubled).all() and 4 < int(dropped.sum()) < 28


def test_prior_shift_is_minus_strength_times_the_log_share_centred():
    from rnnonnx.model import prior_shift

    shift = prior_shift([60, 30, 10], 0.5)
    expected = -0.5 * np.log(np.array([0.6, 0.3, 0.1]))
    assert np.allclose(shift, expected - expected.mean()) and abs(sum(shift)) < 1e-12
    assert prior_shift([5, 5, 5], 0.25) == (0.0, 0.0, 0.0) and prior_shift([60, 30, 10], 0.0) == ()
    assert np.isfinite(prior_shift([4, 0, 2], 1.0)).all(), "a class without training rows counts as one row"


@pytest.mark.parametrize("members", [1, 3])
def test_logit_shift_reweights_the_probabilities_by_the_prior(members):
    from rnnonnx.model import prior_shift, set_logit_shift

    model = tiny_model("lstm", False, 1, members=members)
    ids = torch.from_numpy(padded_batch(np.random.default_rng(4), 9, 10)[0])
    with torch.no_grad():
        before = ExportWrapper(model)(ids)[1]
        shift = prior_shift([70, 20, 10], 1.0)
        set_logit_shift(model, shift)
        after = ExportWrapper(model)(ids)[1]
    expected = before * torch.tensor(np.exp(shift), dtype=before.dtype)
    assert torch.allclose(after, expected / expected.sum(dim=1, keepdim=True), atol=1e-6)
    assert (after[:, 2] > before[:, 2]).all() and (after[:, 0] < before[:, 0]).all(), "the rarest class gains"
    rebuilt = build_model(model.config).eval()  # as a saved run loads
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(ExportWrapper(rebuilt)(ids)[1], after, atol=1e-6), "applied once, to the mean"


@pytest.mark.parametrize("shift", [(1.0, 2.0), (0.0, float("nan"), 0.0), "abc"])
def test_bad_logit_shifts_are_refused(shift):
    valid = dict(vocab_size=10, num_classes=3, arch="lstm", embed_dim=4, hidden=4, layers=1, bidirectional=False, dropout=0.3)
    with pytest.raises(RnnonnxError):
        ModelConfig(**valid, logit_shift=shift)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_keeps_each_element_with_probability_one_minus_p_in_every_lane_and_scales_it(p):
    """Four masks come from each 64-bit draw: every one of the four 16-bit lanes must drop its
    share (a draw over half the range would leave one lane's sign bit clear), the kept elements
    are scaled so the mean is kept, and the gradient goes through the same mask."""
    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = torch.full((1_000_003,), 2.0, requires_grad=True)  # not a multiple of four
    y = layer(x)
    y.sum().backward()
    kept = y != 0
    assert torch.equal(y[kept], torch.full_like(y[kept], 2.0 / (1.0 - round(p * 65536) / 65536)))
    assert torch.equal(x.grad, (y / 2.0).detach())
    for lane in range(4):
        share = 1.0 - kept[lane::4].float().mean().item()
        assert abs(share - p) < 4e-3, (lane, share)
    assert abs(y.mean().item() - 2.0) < 0.01


def test_dropout_draws_from_the_seed_and_does_nothing_at_inference_or_at_zero():
    x = torch.randn(7, 5, 3)
    torch.manual_seed(4)
    first = Dropout(0.3).train()(x)
    torch.manual_seed(4)
    assert torch.equal(first, Dropout(0.3).train()(x))
    assert not torch.equal(first, Dropout(0.3).train()(x))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert Dropout(0.3).train()(x.double()).dtype == torch.float64


def test_dropout_within_a_level_of_one_drops_everything_like_nn_dropout_of_one():
    x = torch.randn(5, 7)
    out = Dropout(1 - 2**-18).train()(x)  # rounds to all 65,536 levels dropped: no keep rate to scale by
    assert torch.equal(out, torch.zeros_like(x)) and torch.equal(out, torch.nn.Dropout(1.0).train()(x))

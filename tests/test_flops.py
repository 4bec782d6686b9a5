"""Model arithmetic per text: the formula on configs whose count is worked out by hand."""

from __future__ import annotations

import pytest

from rnnonnx.flops import flops_per_token_and_text, mean_flops_per_text


def test_default_lstm_ensemble_by_hand():
    # LSTM, E = H = 64: 4 gates x 64 outputs x (64 + 64) inputs multiply-adds per token = 32,768,
    # i.e. 65,536 FLOPs; head 64 features x 2 classes = 128 multiply-adds = 256 FLOPs; x 3 members.
    model = {
        "arch": "lstm",
        "embed_dim": 64,
        "hidden": 64,
        "layers": 1,
        "bidirectional": False,
        "num_classes": 2,
        "pooling": "last",
        "members": 3,
    }
    assert flops_per_token_and_text(model) == (3 * 65_536, 3 * 256)
    assert mean_flops_per_text(model, [10, 20, 0]) == pytest.approx(3 * 65_536 * (10 + 20 + 1) / 3 + 3 * 256)


def test_gru_two_layers_bidirectional_concat():
    # Layer 1: 2 directions x 2 x 3 gates x 8 x (16 + 8) = 2,304; layer 2 input is 2 x 8 = 16:
    # 2 x 2 x 3 x 8 x (16 + 8) = 2,304. Head: features 8 x 2 directions x 2 (concat) = 32, x 3 classes x 2.
    model = {
        "arch": "gru",
        "embed_dim": 16,
        "hidden": 8,
        "layers": 2,
        "bidirectional": True,
        "num_classes": 3,
        "pooling": "concat",
        "members": 1,
    }
    assert flops_per_token_and_text(model) == (4_608, 192)


def test_plain_rnn_and_truncation():
    model = {"arch": "rnn", "embed_dim": 4, "hidden": 2, "num_classes": 2}
    per_token, per_text = flops_per_token_and_text(model)
    assert (per_token, per_text) == (2 * 1 * 2 * (4 + 2), 2 * 2 * 2)
    assert mean_flops_per_text(model, [100], max_len=5) == 5 * per_token + per_text
    with pytest.raises(ValueError, match="unknown recurrent"):
        flops_per_token_and_text({**model, "arch": "transformer"})

"""The arithmetic a model does per text, so a benchmark's texts/s reads as GFLOP/s.

Counted: the matrix products of the recurrent gates at every step of a text's own tokens, and the
output layer once per text, each multiply-add as 2 FLOPs. For a member with ``G`` gate blocks
(LSTM 4, GRU 3, RNN 1), hidden size ``H``, ``D`` directions and input size ``I_l`` at layer ``l``
(``E``, the embedding size, then ``D*H``), a text of ``T`` tokens costs::

    sum over layers of  D * T * 2 * G * H * (I_l + H)      (input and recurrent products)
    + 2 * F * C                                            (output layer: F features, C classes)

and an ensemble ``members`` times that. Left out, as small next to the products (a few percent at
these sizes): biases, gate activations and element-wise updates, the embedding lookup (a copy, no
arithmetic), pooling and softmax. Padding is not counted: it is work an engine chooses to do,
so it shows as a lower rate. A text with no token counts as one step, as the model runs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
FORMULA = (
    "members * (sum over layers of D*T*2*G*H*(I_l+H) + 2*F*C); G = 4 (LSTM), 3 (GRU), 1 (RNN); "
    "T = the text's tokens (at least 1, at most max_len); multiply-add = 2 FLOPs; biases, activations, "
    "embedding lookup and pooling not counted"
)


def flops_per_token_and_text(model: Mapping[str, Any]) -> tuple[int, int]:
    """(FLOPs per token, FLOPs per text independent of its length) of a model config
    (the manifest's ``model`` entry)."""
    arch = str(model["arch"]).lower()
    if arch not in GATES:
        raise ValueError(f"unknown recurrent architecture {model['arch']!r}")
    gates, hidden, embed = GATES[arch], int(model["hidden"]), int(model["embed_dim"])
    directions = 2 if model.get("bidirectional") else 1
    per_token = 0
    for layer in range(int(model.get("layers", 1))):
        inputs = embed if layer == 0 else directions * hidden
        per_token += directions * 2 * gates * hidden * (inputs + hidden)
    features = hidden * directions * (2 if model.get("pooling") == "concat" else 1)
    members = int(model.get("members", 1))
    return members * per_token, members * 2 * features * int(model["num_classes"])


def mean_flops_per_text(model: Mapping[str, Any], token_counts: Sequence[int], max_len: int | None = None) -> float:
    """Mean FLOPs per text over texts of the given token counts (each clamped to 1..max_len)."""
    if not token_counts:
        raise ValueError("no texts")
    per_token, per_text = flops_per_token_and_text(model)
    steps = [max(1, min(n, max_len) if max_len else n) for n in token_counts]
    return per_token * sum(steps) / len(steps) + per_text

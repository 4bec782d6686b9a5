"""The linear member: a tf-idf logistic regression over the text's tokens and hashed bigrams, blended
with the recurrent members inside the same graph.

Recurrent members trail a linear model on few or long texts: they read the first ``max_len``
tokens and memorise small training sets, while TF-IDF + logistic regression reads every word
(benchmarks/SUITE.md). The linear member is that model, written with the graph's own ops from the
token ids: each token and each bigram of consecutive ids (hashed into ``linear_buckets`` rows, as
the bag branch does) adds its row of a ``[vocabulary + buckets, classes]`` table, weighted by its
inverse document frequency, the weights normalised to unit L2 norm over the text. It reads up to
``linear_max_len`` tokens, the recurrent members the first ``recurrent_len`` of them. The bundle
predicts ``(1 - w) * recurrent + w * linear`` probabilities, ``w`` chosen on the validation rows
(:func:`choose_weight`); ``w = 0`` leaves the member out of the model.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from .text import PAD_ID

# Fixed choices of the member's fit, taken on validation rows of the benchmark suite
# (benchmarks/recipe.md): Adam at this rate, batches of this size, early stopping after
# LINEAR_PATIENCE epochs without gain, at most LINEAR_EPOCHS epochs; on few rows, epochs enough for
# LINEAR_MIN_STEPS optimizer steps (and patience for LINEAR_PATIENCE_STEPS), since a convex model
# needs steps, not passes, to converge.
LINEAR_LR = 0.02
LINEAR_BATCH = 64
LINEAR_EPOCHS = 20
LINEAR_PATIENCE = 3
LINEAR_MIN_STEPS = 1000
LINEAR_PATIENCE_STEPS = 150
# The blend weights tried on validation: the recurrent members keep at least a tenth of the vote.
WEIGHT_GRID = tuple(round(0.1 * k, 1) for k in range(10))


class LinearMember(nn.Module):
    """ids ``[batch, sequence]`` to class logits: a tf-idf weighted sum of token and bigram rows.

    Padding (id 0) and bigrams running into padding read index 0, whose idf is 0, so a text's
    logits do not depend on its batch-mates or its padding."""

    def __init__(self, vocab_size: int, buckets: int, num_classes: int, multiplier: int) -> None:
        super().__init__()
        self.vocab_size, self.buckets, self.multiplier = vocab_size, buckets, multiplier
        self.table = nn.Embedding(vocab_size + buckets, num_classes)
        nn.init.zeros_(self.table.weight)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        # fp16 (an idf is between 1 and ln(rows) + 1): half the bytes in the bundle, read back as fp32
        self.register_buffer("idf", torch.zeros(vocab_size + buckets, dtype=torch.float16))

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids, then the bigram rows ``vocab + (id[i] * multiplier + id[i+1]) mod buckets``
        (0 where the next id is padding): ``[batch, 2 * sequence]``."""
        following = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)
        bigrams = self.vocab_size + torch.remainder(input_ids * self.multiplier + following, self.buckets)
        return torch.cat([input_ids, torch.where(following != PAD_ID, bigrams, torch.zeros_like(bigrams))], dim=1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        features = self.features(input_ids)
        weights = self.idf[features].float()
        norm = weights.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        return (self.table(features) * (weights / norm).unsqueeze(-1)).sum(dim=1) + self.bias

    def set_idf(self, train_ids: torch.Tensor) -> None:
        """Smoothed idf of every feature over the training rows, as scikit-learn's
        ``TfidfVectorizer``: ``ln((1 + n) / (1 + df)) + 1``; 0 for padding."""
        counts = torch.zeros(self.vocab_size + self.buckets, dtype=torch.float64)
        for chunk in train_ids.split(1024):
            features = self.features(chunk)
            rows = torch.arange(len(chunk)).unsqueeze(1).expand_as(features)
            pairs = torch.unique(rows * (self.vocab_size + self.buckets) + features)
            counts += torch.bincount(pairs % (self.vocab_size + self.buckets), minlength=len(counts)).double()
        idf = torch.log((1 + len(train_ids)) / (1 + counts)) + 1
        idf[PAD_ID] = 0.0
        self.idf.copy_(idf.half())


@dataclass
class LinearFit:
    """The fitted member (at its best epoch), the epoch count and its validation record."""

    member: LinearMember
    best_epoch: int
    val_accuracy: float
    val_loss: float
    seconds: float


def _batches(count: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    return list(order.split(LINEAR_BATCH))


def scores(member: LinearMember, ids: torch.Tensor, targets: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``member`` on ``ids``."""
    logits = logits_of(member, ids, device)
    loss = nn.functional.cross_entropy(logits, targets)
    return float(loss), float((logits.argmax(dim=1) == targets).double().mean()) if len(targets) else 0.0


def logits_of(member: LinearMember, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The member's logits for every row, in row order, on the CPU."""
    member.eval()
    with torch.no_grad():
        parts = [member(ids[rows].to(device)).cpu() for rows in _batches(len(ids), None)]
    return torch.cat(parts) if parts else torch.zeros((0, member.bias.shape[0]))


def fit_linear(
    member: LinearMember,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
    seed: int,
    class_weights: list[float] | None = None,
    epochs: int | None = None,
) -> LinearFit:
    """Train ``member`` (its idf set from ``train``) with Adam, keeping the epoch best on validation
    accuracy (then loss), stopping when it has not improved for a while (see LINEAR_PATIENCE). With
    ``epochs`` (a refit) it trains that many epochs and keeps the last, ``validation`` then unused."""
    started = time.perf_counter()
    member.set_idf(train[0])
    member.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(member.parameters(), lr=LINEAR_LR)
    weight = torch.tensor(class_weights, dtype=torch.float32, device=device) if class_weights is not None else None
    best_key, best_state, best_epoch, stale = (math.inf,), None, 0, 0
    val_loss, val_acc = math.nan, math.nan
    steps = math.ceil(len(train[0]) / LINEAR_BATCH)
    most = max(LINEAR_EPOCHS, math.ceil(LINEAR_MIN_STEPS / steps))
    patience = max(LINEAR_PATIENCE, math.ceil(LINEAR_PATIENCE_STEPS / steps))
    for epoch in range(1, (epochs or most) + 1):
        member.train()
        for rows in _batches(len(train[0]), generator):
            ids = train[0][rows]
            ids = ids[:, : max(1, int((ids != PAD_ID).sum(dim=1).max()))].to(device)
            loss = nn.functional.cross_entropy(member(ids), train[1][rows].to(device), weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epochs is not None or validation is None:
            continue
        val_loss, val_acc = scores(member, *validation, device)
        if (-val_acc, val_loss) < best_key:
            best_key, best_epoch, stale = (-val_acc, val_loss), epoch, 0
            best_state = copy.deepcopy(member.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        member.load_state_dict(best_state)
        val_acc, val_loss = -best_key[0], best_key[1]
    else:
        best_epoch = epochs or most
    return LinearFit(member.cpu(), best_epoch, val_acc, val_loss, round(time.perf_counter() - started, 2))


def choose_weight(recurrent: torch.Tensor, linear: torch.Tensor, targets: torch.Tensor) -> tuple[float, dict[str, float]]:
    """The blend weight of WEIGHT_GRID with the best validation accuracy (ties: the lower
    cross-entropy, then the smaller weight), from the two parts' validation probabilities; and
    the accuracy of every weight tried."""
    best, best_key, tried = 0.0, (math.inf,), {}
    for weight in WEIGHT_GRID:
        blend = (1 - weight) * recurrent + weight * linear
        accuracy = float((blend.argmax(dim=1) == targets).double().mean())
        loss = float(-blend[torch.arange(len(targets)), targets].clamp_min(1e-12).log().mean())
        tried[f"{weight:g}"] = round(accuracy, 6)
        if (-accuracy, loss) < best_key:
            best, best_key = weight, (-accuracy, loss)
    return best, tried

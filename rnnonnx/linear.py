"""The linear member: a tf-idf logistic regression over the text's tokens and bigrams, blended
with the recurrent members inside the same graph.

Recurrent members trail a linear model on few or long texts: they read the first ``max_len``
tokens and memorise small training sets, while TF-IDF + logistic regression reads every word
(benchmarks/SUITE.md). The linear member is that model, written with the graph's own ops from the
token ids: each token and each known bigram of consecutive ids adds its row of a
``[vocabulary + bigram rows, classes]`` table, weighted by its inverse document frequency, the
weights normalised to unit L2 norm over the text. The bigrams are those of an exact index (the
bigrams found in at least ``BIGRAM_MIN_DF`` training rows, :class:`BigramIndex`) or, with
``--linear-buckets N``, all bigrams hashed into N rows as the bag branch does. It reads up to
``linear_max_len`` tokens, the recurrent members the first ``recurrent_len`` of them. The bundle
predicts ``(1 - w) * recurrent + w * linear`` probabilities, ``w`` chosen on the validation rows
(:func:`choose_weight`); ``w = 0`` leaves the member out of the model.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import grown_batch
from .optimizer import adam, sparse_embeddings
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
# On many rows the batch doubles for every 12,000 training rows up to LINEAR_BATCH_MAX, the rate
# growing with its square root, by the recurrent members' ``--batch-size auto`` rule
# (config.grown_batch): Adam's step over the whole table costs the same whatever the batch, and on
# 24,000 rows of 27 and 58 classes a quarter of the steps gave the same held-out accuracy in
# 0.55-0.76x the time (benchmarks/recipe.md).
LINEAR_BATCH_MAX = 256
# The blend weights tried on validation: the recurrent members keep at least a tenth of the vote.
WEIGHT_GRID = tuple(round(0.1 * k, 1) for k in range(10))
# The exact bigram index keeps the bigrams of at least BIGRAM_MIN_DF training rows: on validation
# (benchmarks/linear_variants.py) as accurate as keeping every bigram, in a quarter of the rows.
# Its hash (see BigramIndex): a bigram's key spreads over one group per BIGRAM_GROUP_SIZE bigrams
# and over the slots, of which BIGRAM_LOAD are filled; KEY_PRIME (prime, above any vocabulary)
# makes keys distinct and mixes the first id into every remainder.
BIGRAM_MIN_DF = 2
BIGRAM_GROUP_SIZE = 4
BIGRAM_LOAD = 0.9
KEY_PRIME = 2_147_483_647


@dataclass
class BigramIndex:
    """A perfect hash of known bigrams, looked up with standard graph ops (no search, no ML-domain
    op): a bigram ``(a, b)`` has the key ``k = a * KEY_PRIME + b``, the group ``g = k mod
    len(shifts)`` and the slot ``s = (k + shifts[g]) mod len(keys)``; it is known when ``keys[s] ==
    k`` (empty slots hold -1). The shifts are chosen at build time (hash and displace: the largest
    groups first, each moved by the first shift that lands all its bigrams on free slots), so two
    known bigrams never share a slot. The counts of groups and slots are coprime, so a key's group
    says nothing of its home slot ``k mod len(keys)``. (Row displacement, the parser tables' scheme
    of one shift per first id and no hash, would save the graph two operators, but word bigrams
    pack badly that way: the frequent first ids have long rows that collide, and the built-in
    sentences' index needed three times the slots.)"""

    keys: np.ndarray
    shifts: np.ndarray

    @classmethod
    def build(cls, train_ids: torch.Tensor, vocab_size: int, min_df: int = BIGRAM_MIN_DF) -> "BigramIndex":
        """The index of the bigrams of consecutive non-padding ids in at least ``min_df`` rows."""
        found = []
        for chunk in train_ids.split(1024):
            following = torch.cat([chunk[:, 1:], torch.zeros_like(chunk[:, :1])], dim=1)
            rows = torch.arange(len(chunk)).unsqueeze(1).expand_as(chunk)
            real = (following != PAD_ID) & (chunk != PAD_ID)
            found.append(torch.unique(rows[real] * vocab_size * vocab_size + chunk[real] * vocab_size + following[real]))
        pairs = torch.cat(found) % (vocab_size * vocab_size) if found else torch.zeros(0, dtype=torch.int64)
        known, df = torch.unique(pairs, return_counts=True)
        known = known[df >= min_df]
        return cls.of_keys((known // vocab_size * KEY_PRIME + known % vocab_size).numpy())

    @classmethod
    def of_keys(cls, keys: np.ndarray) -> "BigramIndex":
        """The index of the bigram keys ``a * KEY_PRIME + b`` (distinct)."""
        keys = np.asarray(keys, dtype=np.int64)
        groups = max(1, math.ceil(len(keys) / BIGRAM_GROUP_SIZE))
        slots = max(1, math.ceil(len(keys) / BIGRAM_LOAD))
        group = keys % groups
        while True:  # one more slot while a group holds two bigrams of one home slot; more when full
            if math.gcd(slots, groups) != 1:
                slots += 1
                continue
            home = keys % slots
            order = np.lexsort((home, group))
            if np.any((group[order][1:] == group[order][:-1]) & (home[order][1:] == home[order][:-1])):
                slots += 1
                continue
            placed = _displace(group[order], home[order], keys[order], groups, slots)
            if placed is not None:
                return cls(*placed)
            slots += max(1, slots // 64)


def key_of(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The bigram key of :class:`BigramIndex`."""
    return first * KEY_PRIME + second


def slot_of(keys: torch.Tensor, shifts: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`BigramIndex`'s lookup in tensor ops (the graph's own, once exported): each key's slot,
    and whether the bigram is known (the slot holds its key)."""
    slot = torch.remainder(key + shifts[torch.remainder(key, len(shifts))], len(keys))
    return slot, keys[slot] == key


def _displace(
    group: np.ndarray, home: np.ndarray, keys: np.ndarray, groups: int, slots: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Slot keys and group shifts placing every key (sorted by group, distinct homes within a
    group), or ``None`` when a group finds no shift onto free slots."""
    table, shifts = np.full(slots, -1, dtype=np.int64), np.zeros(groups, dtype=np.int64)
    if not len(keys):
        return table, shifts
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)]
    free = np.ones(slots, dtype=bool)
    for at in np.argsort(starts - ends, kind="stable"):  # largest groups first
        homes = home[starts[at] : ends[at]]
        if len(homes) == 1:  # a lone bigram takes the next free slot
            shift = (int(np.argmax(free)) - int(homes[0])) % slots
        else:
            found = _first_shift(free, homes, slots)
            if found is None:
                return None
            shift = found
        placed = (homes + shift) % slots
        free[placed] = False
        table[placed] = keys[starts[at] : ends[at]]
        shifts[group[starts[at]]] = shift
    return table, shifts


def _first_shift(free: np.ndarray, homes: np.ndarray, slots: int, step: int = 256) -> int | None:
    """The smallest shift that puts every one of ``homes`` on a free slot, if any does."""
    for low in range(0, slots, step):
        shifts = np.arange(low, min(low + step, slots))
        fits = free[(homes[None, :] + shifts[:, None]) % slots].all(axis=1)
        if fits.any():
            return int(shifts[np.argmax(fits)])
    return None


class LinearMember(nn.Module):
    """ids ``[batch, sequence]`` to class logits: a tf-idf weighted sum of token and bigram rows.

    Padding (id 0) and bigrams running into padding or not in the index read index 0, whose idf is
    0, so a text's logits do not depend on its batch-mates or its padding. With ``groups`` (> 0)
    the ``buckets`` bigram rows are the slots of an exact :class:`BigramIndex` with that many
    groups (set by :meth:`exact`); with ``groups=0`` every bigram is hashed into ``buckets`` rows."""

    def __init__(self, vocab_size: int, buckets: int, num_classes: int, multiplier: int, groups: int = 0) -> None:
        super().__init__()
        self.vocab_size, self.buckets, self.multiplier, self.groups = vocab_size, buckets, multiplier, groups
        self.table = nn.Embedding(vocab_size + buckets, num_classes)
        nn.init.zeros_(self.table.weight)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        # fp16 (an idf is between 1 and ln(rows) + 1): half the bytes in the bundle, read back as fp32
        self.register_buffer("idf", torch.zeros(vocab_size + buckets, dtype=torch.float16))
        if groups:
            self.register_buffer("bigram_keys", torch.full((buckets,), -1, dtype=torch.int64))
            self.register_buffer("bigram_shifts", torch.zeros(groups, dtype=torch.int64))

    @classmethod
    def exact(
        cls, train_ids: torch.Tensor, vocab_size: int, num_classes: int, multiplier: int, min_df: int = BIGRAM_MIN_DF
    ) -> "LinearMember":
        """A member whose bigrams are the exact index of those in ``train_ids`` (:class:`BigramIndex`)."""
        index = BigramIndex.build(train_ids, vocab_size, min_df)
        member = cls(vocab_size, len(index.keys), num_classes, multiplier, len(index.shifts))
        member.bigram_keys.copy_(torch.from_numpy(index.keys))
        member.bigram_shifts.copy_(torch.from_numpy(index.shifts))
        return member

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids, then each position's bigram row (0 where the next id is padding or the bigram
        is not in the index): ``vocab + slot`` of the exact index, or ``vocab + (id[i] * multiplier
        + id[i+1]) mod buckets`` when hashed. ``[batch, 2 * sequence]``."""
        following = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)
        if self.groups:
            slot, known = slot_of(self.bigram_keys, self.bigram_shifts, key_of(input_ids, following))
            return torch.cat([input_ids, torch.where(known, self.vocab_size + slot, torch.zeros_like(slot))], dim=1)
        bigrams = self.vocab_size + torch.remainder(input_ids * self.multiplier + following, self.buckets)
        return torch.cat([input_ids, torch.where(following != PAD_ID, bigrams, torch.zeros_like(bigrams))], dim=1)

    def untrained(self) -> "LinearMember":
        """A fresh member with this one's shape and bigram index (what a refit starts from)."""
        member = LinearMember(self.vocab_size, self.buckets, self.bias.shape[0], self.multiplier, self.groups)
        if self.groups:
            member.bigram_keys.copy_(self.bigram_keys)
            member.bigram_shifts.copy_(self.bigram_shifts)
        return member

    def placed(self) -> "LinearMember":
        """This member, or the same member with its bigram index laid out anew when its keys do not
        sit where :class:`BigramIndex` puts them: a run saved by an earlier version keys a bigram
        ``a * vocab + b`` under another hash. Same bigrams, rows and idf, so the same logits."""
        if not self.groups:
            return self
        stored = torch.nonzero(self.bigram_keys >= 0).flatten()
        keys = self.bigram_keys[stored]
        slot, known = slot_of(self.bigram_keys, self.bigram_shifts, keys)
        if bool(known.all()) and torch.equal(slot, stored):
            return self
        keys = keys // self.vocab_size * KEY_PRIME + keys % self.vocab_size
        index = BigramIndex.of_keys(keys.numpy())
        member = LinearMember(self.vocab_size, len(index.keys), self.bias.shape[0], self.multiplier, len(index.shifts))
        member.bigram_keys.copy_(torch.from_numpy(index.keys))
        member.bigram_shifts.copy_(torch.from_numpy(index.shifts))
        tokens = torch.arange(self.vocab_size)
        rows = torch.cat([tokens, self.vocab_size + slot_of(member.bigram_keys, member.bigram_shifts, keys)[0]])
        kept = torch.cat([tokens, self.vocab_size + stored])
        with torch.no_grad():
            member.table.weight[rows] = self.table.weight[kept]
            member.idf[rows] = self.idf[kept]
            member.bias.copy_(self.bias)
        return member

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
    batch: int
    lr: float


def batch_for(train_rows: int) -> tuple[int, float]:
    """``(batch, lr)`` of the member's fit on ``train_rows`` rows (see LINEAR_BATCH_MAX)."""
    return grown_batch(LINEAR_BATCH, LINEAR_BATCH_MAX, LINEAR_LR, train_rows)


def _batches(count: int, generator: torch.Generator | None, size: int = LINEAR_BATCH) -> list[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    return list(order.split(size))


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
    batch: tuple[int, float] | None = None,
) -> LinearFit:
    """Train ``member`` (its idf set from ``train``) with Adam, keeping the epoch best on validation
    accuracy (then loss), stopping when it has not improved for a while (see LINEAR_PATIENCE). With
    ``epochs`` (a refit) it trains that many epochs and keeps the last, ``validation`` then unused.
    ``batch``: the ``(batch size, rate)``, by default :func:`batch_for` the training rows; a refit
    passes its fit's, to repeat those steps on more rows."""
    started = time.perf_counter()
    member.set_idf(train[0])
    member.to(device)
    sparse_embeddings(member, device)
    generator = torch.Generator().manual_seed(seed)
    size, lr = batch or batch_for(len(train[0]))
    optimizer = adam(member.parameters(), lr, device)
    weight = torch.tensor(class_weights, dtype=torch.float32, device=device) if class_weights is not None else None
    best_key, best_state, best_epoch, stale = (math.inf,), None, 0, 0
    val_loss, val_acc = math.nan, math.nan
    steps = math.ceil(len(train[0]) / size)
    most = max(LINEAR_EPOCHS, math.ceil(LINEAR_MIN_STEPS / steps))
    patience = max(LINEAR_PATIENCE, math.ceil(LINEAR_PATIENCE_STEPS / steps))
    for epoch in range(1, (epochs or most) + 1):
        member.train()
        for rows in _batches(len(train[0]), generator, size):
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
    return LinearFit(member.cpu(), best_epoch, val_acc, val_loss, round(time.perf_counter() - started, 2), size, lr)


def choose_weight(
    recurrent: torch.Tensor, linear: torch.Tensor, targets: torch.Tensor, shift: tuple[float, ...] = ()
) -> tuple[float, dict[str, float]]:
    """The blend weight of WEIGHT_GRID with the best validation accuracy (ties: the lower
    cross-entropy, then the smaller weight), from the two parts' validation probabilities, read as
    the model will read them (with the logit ``shift`` of a logit adjustment, if any); and the
    accuracy of every weight tried."""
    best, best_key, tried = 0.0, (math.inf,), {}
    offset = torch.tensor(shift, dtype=recurrent.dtype) if shift else None
    for weight in WEIGHT_GRID:
        blend = (1 - weight) * recurrent + weight * linear
        if offset is not None:
            blend = torch.softmax(blend.clamp_min(torch.finfo(blend.dtype).tiny).log() + offset, dim=-1)
        accuracy = float((blend.argmax(dim=1) == targets).double().mean())
        loss = float(-blend[torch.arange(len(targets)), targets].clamp_min(1e-12).log().mean())
        tried[f"{weight:g}"] = round(accuracy, 6)
        if (-accuracy, loss) < best_key:
            best, best_key = weight, (-accuracy, loss)
    return best, tried

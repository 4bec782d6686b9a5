"""The PyTorch classifier: embedding, a recurrent encoder (RNN, LSTM or GRU), a linear head;
and an ensemble of such classifiers, which exports as one ONNX graph."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ModelConfig
from .linear import LinearMember
from .text import PAD_ID

# The multiplier of the bigram hash ``(first * NGRAM_PRIME + second) mod buckets`` (a prime above any
# vocabulary size, so that distinct pairs of ids spread over the buckets); changing it changes every
# trained bag table, so it is fixed here for good.
NGRAM_PRIME = 1_000_003
# Dropout masks are 16-bit random integers compared with a threshold (see :class:`Dropout`).
MASK_LEVELS = 1 << 16


class Dropout(nn.Dropout):
    """``nn.Dropout`` with masks drawn as 16-bit random integers, four to each 64-bit draw.

    PyTorch's CPU Bernoulli draws one random number per element, on AMD CPUs one at a time: it was
    a tenth of a member's training step, and a step with these masks takes 0.91x as long
    (benchmarks/recipe.md). An element is kept when its integer is at least ``round(p * 65536)``
    of the 65,536 levels up, so with probability ``1 - p`` to within 2**-17, and the kept ones are
    scaled by the inverse of that exact probability: the expected output is the input, as with
    ``nn.Dropout``. Nothing at inference, so nothing in the exported graph.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        dropped = round(self.p * MASK_LEVELS)
        if dropped >= MASK_LEVELS:
            return torch.zeros_like(x)
        count = x.numel()
        draws = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), None)
        levels = draws.view(torch.int16)[:count].view(x.shape)
        keep = levels >= dropped - MASK_LEVELS // 2
        return x * (keep * (MASK_LEVELS / (MASK_LEVELS - dropped))).to(x.dtype)


class TextClassifier(nn.Module):
    """Maps right-padded token ids ``[batch, seq]`` to class logits ``[batch, classes]``.

    Sequences are packed by their true lengths, so padding never reaches the recurrent layers:
    a text gets the same logits whatever it is batched with, in both directions. (Training a
    forward-only layer skips the packing: padding after a text's steps cannot reach them.) The features
    come from the last layer's outputs. ``pooling="max"``: their element-wise maximum over the
    text's own steps (padding masked out), which keeps long texts from resting on the final step
    alone. ``pooling="last"``: the output at each direction's final step, position ``length - 1``
    going forward, position 0 going backward (the final hidden state exported as ``Y_h`` fails to
    convert with packed sequences in torch 2.13). A row of only padding counts as length 1.
    ``config.logit_shift`` is added to the logits (logit adjustment), which are then divided by
    ``config.temperature`` (calibration) when it is not 1. With ``config.multi_label`` each logit
    is read through its own sigmoid (see :func:`probabilities_of`).

    With ``config.ngram_buckets > 0`` a bag-of-n-grams branch (fastText's model) sits beside the
    recurrent one: the mean of the embeddings of the text's tokens and of its hashed bigrams of
    consecutive ids (a table of ``ngram_buckets`` rows), concatenated to the pooled recurrent
    features before the head. Order-free and cheap, it reads every token the recurrent layers do and
    learns fast on few or long texts, where the recurrent branch alone trails a linear model
    (benchmarks/recipe.md). It is masked by the text's own length, so padding and batch-mates never
    reach it either.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.arch]
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        self.rnn = rnn_cls(
            config.embed_dim,
            config.hidden,
            num_layers=config.layers,
            bidirectional=config.bidirectional,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.dropout = Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        poolings = 2 if config.pooling == "concat" else 1
        bag = config.embed_dim if config.ngram_buckets else 0
        self.bigrams = nn.Embedding(config.ngram_buckets, config.embed_dim) if config.ngram_buckets else None
        if self.bigrams is not None:  # fastText's start: near zero, so that rare buckets add little noise to the mean
            nn.init.uniform_(self.bigrams.weight, -1.0 / config.embed_dim, 1.0 / config.embed_dim)
        self.head = nn.Linear(config.hidden * directions * poolings + bag, config.num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.config.recurrent_len:  # the linear member reads further (rnnonnx/linear.py)
            input_ids = input_ids[:, : self.config.recurrent_len]
        lengths = (input_ids != PAD_ID).sum(dim=1).clamp(min=1)
        tokens = self.embedding(input_ids)
        embedded = self.dropout(tokens)
        if self.training and not self.config.bidirectional:
            # A forward layer's output at a text's own steps never depends on the padding after
            # them, and pooling reads only those steps: training skips the packing, for the fused
            # kernel over the padded batch (a training run 1.6x faster on 16-token texts,
            # benchmarks/recipe.md). Evaluation and export keep the packed path, which a backward
            # direction needs.
            outputs = self.rnn(embedded)[0]
        else:
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
        pooled = []
        if self.config.pooling in ("last", "concat"):
            index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
            last = outputs.gather(1, index).squeeze(1)
            if self.config.bidirectional:
                hidden = self.config.hidden
                last = torch.cat([last[:, :hidden], outputs[:, 0, hidden:]], dim=-1)
            pooled.append(last)
        if self.config.pooling in ("max", "concat"):
            valid = torch.arange(outputs.shape[1], device=outputs.device).unsqueeze(0) < lengths.unsqueeze(1)
            pooled.append(outputs.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(dim=1))
        if self.bigrams is not None:
            pooled = [self._branch_dropout(torch.cat(pooled, dim=-1)), self._bag(input_ids, tokens)]
        features = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)
        return _scaled(_shifted(self.head(self.dropout(features)), self.config.logit_shift), self.config.temperature)

    def _branch_dropout(self, recurrent: torch.Tensor) -> torch.Tensor:
        """While training, the recurrent features of a random ``config.branch_dropout`` share of the
        rows are zeroed (the rest scaled up, as dropout does), so the bag branch must classify those
        rows alone: otherwise the recurrent layers memorise small training sets within a few epochs,
        the loss vanishes and the bag stops learning (benchmarks/recipe.md). No op at inference."""
        if not self.training or self.config.branch_dropout == 0.0:
            return recurrent
        keep = torch.rand(len(recurrent), 1, device=recurrent.device) >= self.config.branch_dropout
        return recurrent * keep / (1.0 - self.config.branch_dropout)

    def _bag(self, input_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Mean embedding of the tokens and of the bigrams ``(id[i], id[i + 1])`` of the text.

        The ids are shifted left by one against a padding column, so every position has a
        successor and the graph never meets a zero-width tensor (a text of one token). Only the
        integer ops Mul, Add, Mod, Gather and masked sums: the same in ONNX Runtime.
        """
        assert self.bigrams is not None
        token_mask = (input_ids != PAD_ID).unsqueeze(-1).to(tokens.dtype)
        following = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)
        bigram_mask = (following != PAD_ID).unsqueeze(-1).to(tokens.dtype)
        buckets = torch.remainder(input_ids * NGRAM_PRIME + following, self.config.ngram_buckets)
        total = (tokens * token_mask).sum(dim=1) + (self.bigrams(buckets) * bigram_mask).sum(dim=1)
        count = (token_mask.sum(dim=1) + bigram_mask.sum(dim=1)).clamp(min=1.0)
        return total / count


class Ensemble(nn.Module):
    """Independently trained classifiers voting by their mean probability, and the linear member.

    ``forward`` returns the log of that mean, so a softmax over it gives the mean exactly and
    the ONNX graph keeps the ``logits``/``probabilities`` outputs of a single classifier.
    Averaging members that started from different seeds cancels much of each one's variance:
    on the built-in sentences three members gain more than any single-model setting tried
    (benchmarks/recipe.md). The logit shift and the temperature of ``config`` (logit adjustment,
    calibration) apply to that log-mean, once, not to each member (whose configs have none). With
    ``config.linear_weight`` the linear member (:class:`rnnonnx.linear.LinearMember`) takes that
    share of the mean probability.
    """

    def __init__(self, members: list[TextClassifier], config: ModelConfig | None = None, linear: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config or members[0].config
        self.members = nn.ModuleList(members)
        self.linear = linear

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.config.multi_label:
            # the members' mean sigmoid per label; its logit, so a sigmoid over it gives the mean back
            mean = torch.stack([torch.sigmoid(m(input_ids)) for m in self.members]).mean(dim=0)
            tiny = torch.finfo(mean.dtype).tiny
            return _scaled(mean.clamp_min(tiny).log() - (1 - mean).clamp_min(tiny).log(), self.config.temperature)
        probabilities = torch.stack([torch.softmax(m(input_ids), dim=-1) for m in self.members]).mean(dim=0)
        if self.linear is not None:
            weight = self.config.linear_weight
            probabilities = (1 - weight) * probabilities + weight * torch.softmax(self.linear(input_ids), dim=-1)
        log_mean = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
        return _scaled(_shifted(log_mean, self.config.logit_shift), self.config.temperature)


def probabilities_of(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Probabilities from logits: a softmax over the labels, or one sigmoid per label (multi-label)."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature``; no operation at all for 1, so uncalibrated graphs stay as they were."""
    return logits if temperature == 1.0 else logits / temperature


def _shifted(logits: torch.Tensor, shift: tuple[float, ...]) -> torch.Tensor:
    """``logits + shift``; no operation at all without a shift, so unadjusted graphs stay as they were."""
    return logits + logits.new_tensor(shift) if shift else logits


def prior_shift(counts: list[int], strength: float) -> tuple[float, ...]:
    """The logit adjustment for classes with these training row ``counts``: ``-strength * log`` of
    each class's share (a class without rows counted as one), centred so that the shifts sum to 0.
    Empty for strength 0, and all zeros for balanced counts."""
    if not strength:
        return ()
    rows = [max(int(count), 1) for count in counts]
    shift = [-strength * math.log(count / sum(rows)) for count in rows]
    return tuple(value - sum(shift) / len(shift) for value in shift)


def set_logit_shift(model: TextClassifier | Ensemble, shift: tuple[float, ...]) -> None:
    """Adjust a trained model in place: ``shift`` is added to its logits from now on (before the
    temperature), and its config (saved with the run, hence in the bundle) records it."""
    model.config = replace(model.config, logit_shift=tuple(shift))


def build_model(config: ModelConfig) -> TextClassifier | Ensemble:
    """The network a config describes: one classifier, or an ensemble of ``config.members`` (and
    the linear member when ``config.linear_weight`` is not 0)."""
    if config.members == 1 and not config.linear_weight:
        return TextClassifier(config)
    member = replace(config, temperature=1.0, logit_shift=())
    linear = None
    if config.linear_weight:
        linear = LinearMember(config.vocab_size, config.linear_buckets, config.num_classes, NGRAM_PRIME, config.linear_groups)
    return Ensemble([TextClassifier(member) for _ in range(config.members)], config, linear)


def set_temperature(model: TextClassifier | Ensemble, temperature: float) -> None:
    """Calibrate a trained model in place: its logits are divided by ``temperature`` from now on,
    and its config (saved with the run, hence in the bundle) records it."""
    model.config = replace(model.config, temperature=float(temperature))


class ExportWrapper(nn.Module):
    """What goes into ONNX: ids to logits and probabilities (softmax, or sigmoids when multi-label)."""

    def __init__(self, model: TextClassifier | Ensemble) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids)
        return logits, probabilities_of(logits, self.model.config.multi_label)

"""Training and model options, and the one place they are validated.

Light enough for the CLI to read its defaults without importing torch. ``TrainConfig`` holds every
training option; ``ModelConfig``, what rebuilds the network, is derived from it in one place
(:meth:`TrainConfig.model_config`), so the two never drift apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import RnnonnxError

ARCHS = ("rnn", "lstm", "gru")
ANALYZERS = ("word", "char")
DEVICES = ("auto", "cpu", "cuda")

# What early stopping watches and what picks the kept epoch: validation accuracy (validation loss
# breaking ties), or validation loss alone. Accuracy is the default: on the built-in data the
# validation loss turns up after 2-3 epochs (the model grows over-confident) while validation
# accuracy keeps improving for several more (benchmarks/recipe.md).
# A multi-label run's "val_accuracy" monitoring watches validation micro-F1 (labels at probability 0.5).
MONITORS = ("val_accuracy", "val_loss")

# How the recurrent outputs become one feature vector: "last" (each direction's final step), "max"
# (element-wise maximum over the text's own steps) or "concat" (both side by side). "auto", the
# default, picks "max" when the median training text is longer than half of max_len or of 64,
# whichever is shorter (of 64 with max_len "auto"), else "last":
# the final step summarises a sentence best (built-in sentences, median 18 tokens), and forgets the
# start of a long text, where the maximum wins by 2 to 17 validation points (benchmarks/recipe.md).
POOLINGS = ("last", "max", "concat")
POOLING_CHOICES = ("auto", *POOLINGS)

# Bounds that keep a typo from asking for terabytes or an hour-long stall: far above any sensible
# recurrent text classifier, far below what would exhaust memory before the first step.
MAX_WIDTH = 16384
MAX_LAYERS = 8
MAX_MEMBERS = 16
MAX_SEED = 2**32 - 1
MAX_TEMPERATURE = 1000.0
# Export's parity: the largest |difference| of probabilities between ONNX Runtime and PyTorch it
# accepts by default, and the most `--tolerance` may raise it to (beyond it, parity would say little).
PARITY_TOLERANCE = 1e-5
MAX_PARITY_TOLERANCE = 1e-3
MAX_CLASS_WEIGHT = 1e6
BALANCED = "balanced"
DEFAULT_EMBED_DIM = 64
# --autotune's budget: from a few seconds (tests, a quick look) to a week.
MAX_AUTOTUNE_SECONDS = 7 * 24 * 3600
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_NGRAM_BUCKETS = 1 << 22
MAX_MAX_LEN = 1 << 20

# ``max_len="auto"`` keeps the AUTO_MAX_LEN_PERCENTILE-th percentile of the training texts' token
# counts, between AUTO_MAX_LEN_FLOOR and AUTO_MAX_LEN_CAP: short texts are read whole, long documents
# as far as the cap, past which a recurrent layer costs time linearly and gains little
# (benchmarks/recipe.md). The resolved number is what the tokenizer (hence every bundle) uses.
AUTO = "auto"
# ``analyzer="auto"`` picks ``char`` when at least AUTO_CHAR_SHARE of the training texts' word
# characters are in scripts read by character (rnnonnx.text.CHAR_SCRIPT_RANGES: Chinese, Japanese,
# Thai, ..., where a run of word characters is a phrase or a clause rather than a word, and Korean,
# whose spaced words carry their particles and endings); else ``word``. The resolved analyzer is
# what the tokenizer (hence every bundle) uses.
ANALYZER_CHOICES = (AUTO, *ANALYZERS)
AUTO_CHAR_SHARE = 0.5
AUTO_MAX_LEN_PERCENTILE = 95
AUTO_MAX_LEN_FLOOR = 16
AUTO_MAX_LEN_CAP = 256
# ``ngram_buckets="auto"``: the bag-of-n-grams branch (AUTO_NGRAM_BUCKETS rows of hashed bigrams) when
# the median training text has more than AUTO_NGRAM_MEDIAN_TOKENS tokens, none for shorter texts.
# Validation accuracy (benchmarks/recipe.md): +2 to +15 points over the recurrent layer alone on the
# long or few-row sets (median 59 to 526 tokens), -2.3 on the built-in sentences (median 18), where
# it also adds 3 MB of bigram tables to the bundle. The threshold is the pooling rule's (max pooling
# once the median passes 32 tokens). A model with the linear member gets no bag: beside it the bag
# changed validation accuracy by -1.2 to +0.7 points on the long sets, for 30% more training time and
# 40% more bytes.
AUTO_NGRAM_BUCKETS = 16384
AUTO_NGRAM_MEDIAN_TOKENS = 32
# The linear member (rnnonnx/linear.py): ``linear_max_len="auto"``: the
# same percentile of token counts as ``max_len``, up to LINEAR_MAX_LEN_CAP tokens (a gather per
# token, cheap next to a recurrent step). ``linear_weight`` is at most MAX_LINEAR_WEIGHT: the
# recurrent members keep a share of every prediction.
LINEAR_MAX_LEN_CAP = 4096
MAX_LINEAR_WEIGHT = 0.9
# ``batch_size="auto"``: AUTO_BATCH texts per step, doubled for every AUTO_BATCH_ROWS training rows
# up to AUTO_BATCH_MAX, with Adam's learning rate scaled by the square root of the growth. Large
# batches cut the per-step overhead that dominates a small recurrent layer on the CPU: on 24,000
# short texts a member trains 2.1x faster at batch 128 and lr 4e-3 than at 32 and 2e-3, at the same
# validation accuracy, while batch 128 at lr 2e-3 lost 1.1 points (benchmarks/recipe.md).
AUTO_BATCH = 32
AUTO_BATCH_ROWS = 12_000
AUTO_BATCH_MAX = 128
# From MANY_ROWS training rows on, a run is large and the "auto" choices below spend less time.
# ``refit="auto"``: refit when there are fewer than MANY_ROWS training rows. The refit trains
# every member again, as long as the fit itself. On 30,000 short texts (24,300 training rows) it
# bought 0.6 and 0.8 points on 3,000 held-out rows and took about half the training time; on the
# built-in sentences (8,000 rows) it bought 1.0 point (benchmarks/recipe.md, benchmarks/autotune.md).
MANY_ROWS = 20_000
# ``epochs="auto"``: at most AUTO_EPOCHS epochs, MANY_ROWS_EPOCHS from MANY_ROWS training rows on,
# where an epoch is hundreds of steps. On two sets of 30,000 short texts (24,300 training rows),
# three members of 10 epochs scored +0.53 and -0.20 points against 15 epochs on 3,000 held-out rows,
# in two thirds of the member time; two members of 15 epochs, as long to train as three of 10,
# scored -0.50 and -0.48 (benchmarks/recipe.md).
AUTO_EPOCHS = 15
MANY_ROWS_EPOCHS = 10
# ``logit_adjustment="auto"``: a multi-class model's log-probabilities get ``-LOGIT_ADJUSTMENT *
# log(training share of the class)`` added (logit adjustment, Menon et al. 2021), which gives the
# rarer classes back part of the vote that early stopping on accuracy and the ensemble's mean take
# from them. On held-out halves of the benchmark suite's validation rows this fixed strength gained
# 0.43 points of accuracy and 0.55 of macro-F1 on average over the twelve sets (+2.6 macro-F1 on 37
# imbalanced classes), more than a strength chosen on validation, which over-fits few rows
# (benchmarks/recipe.md). A balanced training set is left as it is; class weights (``class_weight``)
# already move the vote, so with them ``auto`` is 0. 1 is the full adjustment for balanced error.
LOGIT_ADJUSTMENT = 0.25
MAX_LOGIT_ADJUSTMENT = 2.0


@dataclass
class TrainConfig:
    """Every training option; the defaults are the recipe used for the shipped models.

    Built from the CLI, the Python API or a worker's job file alike, and validated on creation,
    so a bad value is refused with one clear line before any data is read.
    """

    arch: str = "lstm"
    bidirectional: bool = False
    layers: int = 1
    # None: the --vectors file's dimension, else DEFAULT_EMBED_DIM (resolved on creation).
    embed_dim: int | None = None
    hidden: int = 64
    dropout: float = 0.3
    pooling: str = "auto"
    # Three members from different seeds, probabilities averaged: +1.3 to +2.7 validation points over
    # one classifier on the built-in sentences, for 3x the weights (benchmarks/recipe.md).
    members: int = 3
    # "word", "char", or "auto" (see AUTO_CHAR_SHARE), resolved from the training rows.
    analyzer: str = AUTO
    # A number of tokens, or "auto" (see AUTO_MAX_LEN_PERCENTILE), resolved from the training rows.
    max_len: int | str = AUTO
    min_df: int = 2
    max_vocab: int | None = 20000
    # Most epochs per member (early stopping may end sooner), or "auto" (see AUTO_EPOCHS), resolved
    # from the training rows.
    epochs: int | str = AUTO
    # Texts per training step, or "auto" (see AUTO_BATCH), resolved from the training rows; ``lr``
    # is the learning rate at AUTO_BATCH texts per step.
    batch_size: int | str = AUTO
    lr: float = 2e-3
    patience: int = 3
    monitor: str = "val_accuracy"
    validation: float = 0.1
    test: float = 0.1
    seed: int = 0
    device: str = "auto"
    baseline: bool = False
    # Temperature scaling fitted on the validation rows after training, folded into the exported
    # graph: on the built-in test split it cuts the ensemble's calibration error (ECE) by more
    # than half at the same accuracy (README, "Calibrated probabilities").
    calibrate: bool = True
    # None (every class counts the same), "balanced" (weights inversely proportional to each
    # class's training rows, as scikit-learn's), or {label: weight} (labels left out weigh 1).
    # A string "spam=5,ham=1" (the command line's form) is read into that mapping.
    class_weight: str | dict[str, float] | None = None
    # Pretrained word vectors (word2vec/GloVe/fastText text format, see rnnonnx/vectors.py): they
    # initialise the embedding rows of the vocabulary words they cover; ``freeze_embeddings``
    # keeps those rows as the file has them (the other words still learn).
    vectors: str | None = None
    freeze_embeddings: bool = False
    # After early stopping has chosen each member's epoch count, train each member again from
    # its seed on the training + validation rows for that many epochs, as fastText's autotune
    # does: the shipped model learns from 90% of the rows instead of 80% (benchmarks/autotune.md).
    # "auto": refit below MANY_ROWS training rows only.
    refit: bool | str = AUTO
    # Seconds of hyper-parameter search on the validation split (rnnonnx/tuning.py); a string
    # such as "90s", "10m" or "1h" is read into seconds. None: no search.
    autotune: float | None = None
    # Rows of the hashed-bigram table of the bag-of-n-grams branch beside the recurrent one; 0 turns
    # the branch off (see rnnonnx.model.TextClassifier); "auto" decides from the training texts'
    # length (AUTO_NGRAM_BUCKETS above). N x embed_dim parameters per member.
    ngram_buckets: int | str = AUTO
    # Share of training rows whose recurrent features are dropped (the bag branch alone classifies
    # them); only with the bag branch (see rnnonnx.model.TextClassifier._branch_dropout).
    branch_dropout: float = 0.0
    # The linear member's share of the predicted probabilities (rnnonnx/linear.py): "auto" fits
    # the member and chooses the share on the validation rows; 0 leaves it out. Multi-class only.
    linear_weight: float | str = AUTO
    # The linear member's bigrams: "auto", an exact index of those found in at least two training
    # rows (rnnonnx.linear.BigramIndex); N, every bigram hashed into N rows.
    linear_buckets: int | str = AUTO
    # Tokens the linear member reads (the recurrent members read ``max_len`` of them); "auto" as
    # ``max_len`` with the cap LINEAR_MAX_LEN_CAP, never fewer than ``max_len``.
    linear_max_len: int | str = AUTO
    # How far the predictions lean towards rarer classes: "auto" (LOGIT_ADJUSTMENT above, 0 with
    # class weights), or a strength from 0 (none) to MAX_LOGIT_ADJUSTMENT. Multi-class only.
    logit_adjustment: float | str = AUTO

    def __post_init__(self) -> None:
        if self.embed_dim is None and self.vectors is None:
            self.embed_dim = DEFAULT_EMBED_DIM
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("pooling", self.pooling, POOLING_CHOICES)
        _check_choice("analyzer", self.analyzer, ANALYZER_CHOICES)
        _check_choice("monitor", self.monitor, MONITORS)
        _check_choice("device", self.device, DEVICES)
        _check_int("layers", self.layers, 1, MAX_LAYERS)
        if self.embed_dim is not None:
            _check_int("embed_dim", self.embed_dim, 1, MAX_WIDTH)
        _check_int("hidden", self.hidden, 1, MAX_WIDTH)
        _check_int("members", self.members, 1, MAX_MEMBERS)
        self.max_len = _int_or_auto("max_len", self.max_len, 1, MAX_MAX_LEN)
        self.ngram_buckets = _int_or_auto("ngram_buckets", self.ngram_buckets, 0, MAX_NGRAM_BUCKETS)
        _check_float("branch_dropout", self.branch_dropout, 0.0, 1.0, high_open=True)
        if isinstance(self.linear_weight, str) and self.linear_weight != AUTO:  # the command line's spelling
            self.linear_weight = _number("linear_weight", self.linear_weight)
        if self.linear_weight != AUTO:
            _check_float("linear_weight", self.linear_weight, 0.0, MAX_LINEAR_WEIGHT)
        self.linear_buckets = _int_or_auto("linear_buckets", self.linear_buckets, 1, MAX_NGRAM_BUCKETS)
        if isinstance(self.logit_adjustment, str) and self.logit_adjustment != AUTO:
            self.logit_adjustment = _number("logit_adjustment", self.logit_adjustment)
        if self.logit_adjustment != AUTO:
            _check_float("logit_adjustment", self.logit_adjustment, 0.0, MAX_LOGIT_ADJUSTMENT)
        self.linear_max_len = _int_or_auto("linear_max_len", self.linear_max_len, 1, MAX_MAX_LEN)
        _check_int("min_df", self.min_df, 1, None)
        if self.max_vocab is not None:
            _check_int("max_vocab", self.max_vocab, 1, None)
        self.epochs = _int_or_auto("epochs", self.epochs, 1, None)
        self.batch_size = _int_or_auto("batch_size", self.batch_size, 1, 1 << 20)
        _check_int("patience", self.patience, 1, None)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _check_float("lr", self.lr, 0.0, 10.0, low_open=True)
        _check_float("validation", self.validation, 0.0, 1.0, high_open=True)
        _check_float("test", self.test, 0.0, 1.0, high_open=True)
        if self.validation + self.test >= 1.0:
            raise RnnonnxError(f"validation ({self.validation:g}) + test ({self.test:g}) must leave rows to train on")
        if not isinstance(self.bidirectional, bool) or not isinstance(self.baseline, bool):
            raise RnnonnxError("bidirectional and baseline must be true or false")
        if not isinstance(self.calibrate, bool):
            raise RnnonnxError("calibrate must be true or false")
        self.class_weight = _parse_class_weight(self.class_weight)
        if self.vectors is not None and (not isinstance(self.vectors, str) or not self.vectors):
            raise RnnonnxError(f"vectors must be the path of a vectors file, not {self.vectors!r}")
        if not isinstance(self.freeze_embeddings, bool):
            raise RnnonnxError("freeze_embeddings must be true or false")
        if not isinstance(self.refit, bool) and self.refit != AUTO:
            raise RnnonnxError(f"refit must be true, false or {AUTO!r}, not {self.refit!r}")
        if self.freeze_embeddings and self.vectors is None:
            raise RnnonnxError("freeze_embeddings needs vectors: only rows initialised from a vectors file are frozen")
        if self.autotune is not None:
            self.autotune = parse_duration(self.autotune)

    def resolved_max_len(self, token_counts: list[int]) -> int:
        """``max_len`` itself, or for ``auto`` the AUTO_MAX_LEN_PERCENTILE-th percentile of the
        training texts' ``token_counts`` within [AUTO_MAX_LEN_FLOOR, AUTO_MAX_LEN_CAP]."""
        if self.max_len != AUTO:
            return int(self.max_len)
        if not token_counts:
            return AUTO_MAX_LEN_FLOOR
        return max(AUTO_MAX_LEN_FLOOR, min(AUTO_MAX_LEN_CAP, _length_percentile(token_counts)))

    def resolved_linear_max_len(self, token_counts: list[int], max_len: int) -> int:
        """``linear_max_len`` itself, or for ``auto`` the percentile rule of :meth:`resolved_max_len`
        capped at LINEAR_MAX_LEN_CAP; at least ``max_len``, so the recurrent members' tokens are
        always among the ones read."""
        if self.linear_max_len != AUTO:
            return max(int(self.linear_max_len), max_len)
        if not token_counts:
            return max_len
        return max(max_len, min(LINEAR_MAX_LEN_CAP, _length_percentile(token_counts)))

    def resolved_batch(self, train_rows: int) -> tuple[int, float]:
        """``(batch_size, lr)``: as set, or for ``batch_size="auto"`` the AUTO_BATCH rule for
        ``train_rows`` training rows, with ``lr`` scaled by the square root of the batch's growth."""
        if self.batch_size != AUTO:
            return int(self.batch_size), self.lr
        return grown_batch(AUTO_BATCH, AUTO_BATCH_MAX, self.lr, train_rows)

    def resolved_epochs(self, train_rows: int) -> int:
        """The most epochs a member trains: as set, or for ``auto`` AUTO_EPOCHS, MANY_ROWS_EPOCHS from
        MANY_ROWS training rows on."""
        if self.epochs != AUTO:
            return int(self.epochs)
        return AUTO_EPOCHS if train_rows < MANY_ROWS else MANY_ROWS_EPOCHS

    def resolved_refit(self, train_rows: int) -> bool:
        """Whether to refit: as set, or for ``auto`` below MANY_ROWS training rows, where a
        refit's extra ninth of the rows is worth doubling the training time."""
        return self.refit if self.refit != AUTO else train_rows < MANY_ROWS

    def resolved_logit_adjustment(self, multi_label: bool) -> float:
        """The strength of the logit adjustment: as set, or for ``auto`` LOGIT_ADJUSTMENT, 0 for a
        model trained with class weights; a multi-label model has none (its labels are not
        competing for one vote), and asking for one is an error."""
        if multi_label:
            if self.logit_adjustment not in (AUTO, 0):
                raise RnnonnxError("--logit-adjustment is for multi-class models; a multi-label model has none")
            return 0.0
        if self.logit_adjustment == AUTO:
            return 0.0 if self.class_weight is not None else LOGIT_ADJUSTMENT
        return float(self.logit_adjustment)

    def class_weights(self, labels: list[str], counts: list[int]) -> list[float] | None:
        """The loss weight of each label (in ``labels`` order) given its training row ``counts``;
        ``None`` when every class counts the same. A label the data does not have is an error."""
        if self.class_weight is None:
            return None
        if self.class_weight == BALANCED:
            present = [c for c in counts if c > 0]
            return [sum(present) / (len(present) * c) if c > 0 else 1.0 for c in counts]
        unknown = sorted(set(self.class_weight) - set(labels))
        if unknown:
            raise RnnonnxError(
                f"class_weight names label(s) the data does not have: {', '.join(map(repr, unknown))} "
                f"(the labels are {', '.join(map(repr, labels))})"
            )
        return [float(self.class_weight.get(name, 1.0)) for name in labels]

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "TrainConfig":
        """A config from keyword options, naming any that do not exist (a typo is not ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise RnnonnxError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**options)

    def resolved_ngram_buckets(self, token_counts: list[int], linear: bool = False) -> int:
        """``ngram_buckets`` itself, or for ``auto`` AUTO_NGRAM_BUCKETS when the median of the
        training texts' ``token_counts`` exceeds AUTO_NGRAM_MEDIAN_TOKENS, else 0 (no bag branch);
        and 0 when the model has a ``linear`` member, which reads the words better (benchmarks/recipe.md)."""
        if self.ngram_buckets != AUTO:
            return int(self.ngram_buckets)
        if linear:
            return 0
        ordered = sorted(token_counts)
        median = ordered[len(ordered) // 2] if ordered else 0
        return AUTO_NGRAM_BUCKETS if median > AUTO_NGRAM_MEDIAN_TOKENS else 0

    def model_config(self, vocab_size: int, num_classes: int, pooling: str, multi_label: bool = False) -> "ModelConfig":
        """The network this config describes, for a vocabulary and label set; ``pooling`` is the
        resolved choice (``auto`` is decided from the training data)."""
        return ModelConfig(
            vocab_size=vocab_size,
            num_classes=num_classes,
            arch=self.arch,
            embed_dim=self.embed_dim,
            hidden=self.hidden,
            layers=self.layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            pooling=pooling,
            members=self.members,
            multi_label=multi_label,
            ngram_buckets=self.ngram_buckets,
            branch_dropout=self.branch_dropout,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the run's ``config.json`` keeps it under ``training``)."""
        return asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; saved in the run and the bundle manifest.

    Made by :meth:`TrainConfig.model_config`. ``pooling`` and ``members`` default to what runs saved
    before those options existed used, so older runs still load.
    """

    vocab_size: int
    num_classes: int
    arch: str
    embed_dim: int
    hidden: int
    layers: int
    bidirectional: bool
    dropout: float
    pooling: str = "last"
    members: int = 1
    # Temperature scaling: the (ensemble's) logits are divided by it before the softmax. 1.0 for
    # runs trained with --no-calibrate or saved before calibration existed.
    temperature: float = 1.0
    # Multi-label: one sigmoid per label (each label present or not) instead of one softmax over them.
    multi_label: bool = False
    # Rows of the hashed-bigram table of the bag-of-n-grams branch; 0 (no branch) for runs saved
    # before it existed.
    ngram_buckets: int = 0
    # Training only: share of rows whose recurrent features are dropped (0 for older runs).
    branch_dropout: float = 0.0
    # The linear member (rnnonnx/linear.py): its share of the probabilities (0: none, as in runs
    # saved before it existed), its bigram rows, the groups of its exact bigram index (0: the rows
    # are hashed bigrams, as in runs saved before the index existed), and the ids the recurrent
    # members read (the first ``recurrent_len``; 0: all of them).
    linear_weight: float = 0.0
    linear_buckets: int = 0
    recurrent_len: int = 0
    linear_groups: int = 0
    # Added to the (ensemble's) logits before the temperature: ``-strength * log(training share)``
    # per class, centred (TrainConfig.logit_adjustment); empty for none, as in runs saved before it.
    logit_shift: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("pooling", self.pooling, POOLINGS)
        for name in ("vocab_size", "num_classes", "embed_dim", "hidden", "layers", "members"):
            _check_int(name, getattr(self, name), 1, None)
        _check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _check_float("temperature", self.temperature, 0.0, MAX_TEMPERATURE, low_open=True)
        _check_int("ngram_buckets", self.ngram_buckets, 0, MAX_NGRAM_BUCKETS)
        _check_float("branch_dropout", self.branch_dropout, 0.0, 1.0, high_open=True)
        _check_float("linear_weight", self.linear_weight, 0.0, MAX_LINEAR_WEIGHT)
        _check_int("linear_buckets", self.linear_buckets, 1 if self.linear_weight else 0, MAX_NGRAM_BUCKETS)
        _check_int("recurrent_len", self.recurrent_len, 0, MAX_MAX_LEN)
        _check_int("linear_groups", self.linear_groups, 0, MAX_NGRAM_BUCKETS)
        if self.linear_weight and self.multi_label:
            raise RnnonnxError("the linear member is for multi-class models; a multi-label model has none")
        if not isinstance(self.logit_shift, (tuple, list)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in self.logit_shift
        ):
            raise RnnonnxError(f"logit_shift must be a list of finite numbers, not {self.logit_shift!r}")
        if self.logit_shift and (len(self.logit_shift) != self.num_classes or self.multi_label):
            raise RnnonnxError(f"logit_shift needs one number per class of a multi-class model ({self.num_classes})")
        object.__setattr__(self, "logit_shift", tuple(float(v) for v in self.logit_shift))  # JSON gives a list

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"``, ``"1d"``
    (what ``--autotune`` takes, as fastText's ``-autotune-duration``)."""
    seconds = value
    if isinstance(value, str):
        text = value.strip().lower()
        unit = text[-1:] if text[-1:].isalpha() else ""
        try:
            seconds = float(text[: len(text) - len(unit)]) * _DURATION_UNITS[unit]
        except (KeyError, ValueError):
            raise RnnonnxError(f"autotune: a duration like 90s, 10m or 1h, not {value!r}") from None
    _check_float("autotune (seconds)", seconds, 0.0, MAX_AUTOTUNE_SECONDS, low_open=True)
    return float(seconds)


def _parse_class_weight(value: Any) -> str | dict[str, float] | None:
    """``None``, ``"balanced"``, a ``{label: weight}`` mapping, or its command-line spelling
    ``"spam=5,ham=1"``; every weight a positive finite number."""
    if value is None or value == BALANCED:
        return value
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in value.split(","):
            name, sep, weight = item.rpartition("=")
            if not sep or not name.strip():
                raise RnnonnxError(f"class_weight must be 'balanced' or label=weight pairs like 'spam=5,ham=1', not {value!r}")
            try:
                pairs[name.strip()] = float(weight)
            except ValueError:
                raise RnnonnxError(f"class_weight: weight of {name.strip()!r} is not a number: {weight.strip()!r}") from None
        value = pairs
    if not isinstance(value, dict) or not value:
        raise RnnonnxError(f"class_weight must be 'balanced', a label=weight mapping or none, not {value!r}")
    for name, weight in value.items():
        if not isinstance(name, str):
            raise RnnonnxError(f"class_weight: label names are strings, not {name!r}")
        _check_float(f"class_weight of {name!r}", weight, 0.0, MAX_CLASS_WEIGHT, low_open=True)
    return {name: float(weight) for name, weight in value.items()}


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RnnonnxError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def grown_batch(base: int, largest: int, lr: float, train_rows: int) -> tuple[int, float]:
    """``(batch, lr)`` for ``train_rows`` training rows: ``base`` doubled for every AUTO_BATCH_ROWS rows up
    to ``largest``, ``lr`` scaled by the square root of the growth. The one rule of the recurrent
    members' ``--batch-size auto`` and the linear member's batch (:func:`rnnonnx.linear.batch_for`)."""
    batch = min(largest, base << min(8, train_rows // AUTO_BATCH_ROWS))
    return batch, lr * math.sqrt(batch / base)


def row_rule(train_rows: int) -> str:
    """Why an "auto" choice went the way it did, for the progress output: the rows against MANY_ROWS."""
    return f"{train_rows} training rows, {'at least' if train_rows >= MANY_ROWS else 'fewer than'} {MANY_ROWS}"


def _int_or_auto(name: str, value: Any, low: int, high: int | None) -> Any:
    """``AUTO``, or an integer in range; digits (the command line's spelling) are read as one."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value != AUTO:
        _check_int(name, value, low, high)
    return value


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RnnonnxError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise RnnonnxError(f"{name} must be {bound}, not {value}")


def _length_percentile(token_counts: list[int]) -> int:
    """The AUTO_MAX_LEN_PERCENTILE-th percentile (nearest rank) of non-empty ``token_counts``."""
    ordered = sorted(token_counts)
    return ordered[min(len(ordered) - 1, math.ceil(AUTO_MAX_LEN_PERCENTILE / 100 * len(ordered)) - 1)]


def _number(name: str, value: str) -> float:
    """A number given as text (the command line's spelling), or a one-line error."""
    try:
        return float(value)
    except ValueError:
        raise RnnonnxError(f"{name} must be a number or auto, not {value!r}") from None


def _check_float(name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RnnonnxError(f"{name} must be a finite number, not {value!r}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise RnnonnxError(f"{name} must be in {left}{low:g}, {high:g}{right}, not {value:g}")

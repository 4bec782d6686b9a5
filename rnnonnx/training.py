"""Training a run: vocabulary (scikit-learn), split, the members' fit, scores, the run directory.

The epoch loop lives in :mod:`rnnonnx.fitting`, the worker pool in :mod:`rnnonnx.workers`, the run
directory's layout in :mod:`rnnonnx.run`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from . import __version__
from .config import AUTO, TrainConfig, row_rule
from .data import BUILTIN_CREDIT, LabelledTexts, check_classes, read_builtin, split, warn
from .errors import RnnonnxError
from .files import check_output_directory
from .fitting import FitJob, MemberFit, batches, evaluate_loss, evaluate_multilabel, resolve_device, seed_everything
from .model import NGRAM_PRIME, Ensemble, TextClassifier, build_model, prior_shift, set_logit_shift, set_temperature
from .run import MemberRecord, Metrics, is_run_dir, write_run
from .text import PAD_ID, PAD_TOKEN, UNK_TOKEN, Tokenizer, TokenizerSpec, choose_analyzer
from .vectors import WordVectors
from .workers import fit_members, member_pool

if TYPE_CHECKING:
    from .linear import LinearFit

Rows = tuple[list[str], list[str]]
T = TypeVar("T")


def build_vocab(texts: list[str], spec: TokenizerSpec, min_df: int = 1, max_vocab: int | None = None) -> list[str]:
    """Vocabulary from scikit-learn's ``CountVectorizer`` driven by our own analyzer.

    Ids 0 and 1 are padding and unknown; the rest follow the vectorizer's (alphabetical) order.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(analyzer=spec.tokens, min_df=min_df, max_features=max_vocab)
    try:
        vectorizer.fit(texts)
    except ValueError as exc:
        raise RnnonnxError(f"cannot build a vocabulary: {exc} (lower --min-df, or check --analyzer)") from None
    return [PAD_TOKEN, UNK_TOKEN, *vectorizer.get_feature_names_out().tolist()]


# The pooling rule's reference length: max pooling once the median text passes half of it (32
# tokens), or half of ``--max-len`` when that is shorter. With ``--max-len auto`` the rule keeps the
# reference itself: a resolved max_len follows the longest texts, not the typical one, and would tip
# sets like debian-en (median 57) to final-step pooling, 2 points worse there. A longer explicit
# ``--max-len`` keeps it too: read through 512 characters, the Korean and Japanese package
# descriptions (median 163 and 186) would get final-step pooling, and the recurrent members fell from
# 65-70% to 30-44% on validation (benchmarks/recipe.md).
POOLING_REFERENCE_LEN = 64


def resolve_pooling(pooling: str, ids: torch.Tensor, max_len: int) -> str:
    """``auto``: ``max`` when the median training text is longer than half of ``max_len`` or of
    :data:`POOLING_REFERENCE_LEN`, whichever is shorter, else ``last``; any other choice stands.
    ``ids`` are the encoded texts: truncation at ``max_len`` does not move a median across
    ``max_len / 2``, and unknown tokens keep their place."""
    if pooling != "auto":
        return pooling
    lengths = (ids != PAD_ID).sum(dim=1).sort().values
    return "max" if int(lengths[len(lengths) // 2]) > min(max_len, POOLING_REFERENCE_LEN) / 2 else "last"


def resolve_analyzer(config: TrainConfig, texts: list[str], progress: bool = False) -> TrainConfig:
    """The config with ``--analyzer auto`` resolved from the training texts (:func:`rnnonnx.text.choose_analyzer`):
    ``char`` for text mostly in scripts read by character (Chinese, Japanese, Korean, Thai, ...), else
    ``word``. Said aloud."""
    if config.analyzer != AUTO:
        return config
    analyzer, share = choose_analyzer(texts)
    if progress:
        print(f"analyzer auto: {analyzer} ({share:.0%} of the letters and digits in scripts read by character)", file=sys.stderr)
    return replace(config, analyzer=analyzer)


def resolve_max_len(
    config: TrainConfig, texts: list[str], progress: bool = False, multi: bool = False
) -> tuple[int, TrainConfig]:
    """The number of tokens the model reads: ``--max-len`` itself, or for ``auto`` a high percentile
    of the training texts' token counts (:meth:`TrainConfig.resolved_max_len`); and the config with
    the analyzer it counts them with (:func:`resolve_analyzer`) and ``--ngram-buckets auto`` decided
    from the same counts (:meth:`TrainConfig.resolved_ngram_buckets`), so autotune, the run record and
    the model all see a number (a ``multi``-label model has no linear member, so its bag follows the
    length rule). Each choice is said aloud."""
    config = resolve_analyzer(config, texts, progress)
    counts = None
    if "auto" in (config.max_len, config.ngram_buckets):
        spec = TokenizerSpec(analyzer=config.analyzer)
        counts = [len(spec.tokens(text)) for text in texts]
    max_len = int(config.max_len) if config.max_len != "auto" else config.resolved_max_len(counts)
    if progress and config.max_len == "auto":
        print(f"max_len auto: {max_len}", file=sys.stderr)
    if config.ngram_buckets == "auto":
        linear = config.linear_weight != 0 and not multi
        buckets = config.resolved_ngram_buckets(counts, linear)
        if progress:
            why = "bag-of-n-grams branch" if buckets else "no bag: the linear member reads the words"
            why = why if buckets or linear else "no bag: short texts"
            print(f"ngram_buckets auto: {buckets} ({why})", file=sys.stderr)
        config = replace(config, ngram_buckets=buckets)
    return max_len, config


def resolve_batch(config: TrainConfig, train_rows: int, progress: bool = False) -> TrainConfig:
    """The config with ``--batch-size auto`` and the learning rate resolved for ``train_rows``
    (:meth:`TrainConfig.resolved_batch`), once, so that the fit, the refit on more rows and the
    run record all use the same numbers. The choice is said aloud."""
    if config.batch_size != AUTO:
        return config
    batch, lr = config.resolved_batch(train_rows)
    if progress:
        print(f"batch_size auto: {batch} (lr {lr:.3g})", file=sys.stderr)
    return replace(config, batch_size=batch, lr=lr)


def resolve_epochs(config: TrainConfig, train_rows: int, progress: bool = False) -> TrainConfig:
    """The config with ``--epochs auto`` resolved for ``train_rows`` (:meth:`TrainConfig.resolved_epochs`),
    so the run record says how many epochs a member could take; said aloud."""
    if config.epochs != AUTO:
        return config
    epochs = config.resolved_epochs(train_rows)
    if progress:
        print(f"epochs auto: {epochs} ({row_rule(train_rows)})", file=sys.stderr)
    return replace(config, epochs=epochs)


def resolve_refit(config: TrainConfig, rows: "SplitRows", progress: bool = False) -> TrainConfig:
    """The config with ``--refit`` decided for these rows, so the run record says what was done:
    ``auto`` by the training rows (:meth:`TrainConfig.resolved_refit`), said aloud; never when the
    validation rows are the training rows (a warning then)."""
    if rows.validation_is_train:
        if config.refit:
            warn("no refit: the validation rows are the training rows already")
        return replace(config, refit=False)
    if config.refit != AUTO:
        return config
    count = len(rows.train[0])
    refit = config.resolved_refit(count)
    if progress:
        print(f"refit auto: {'yes' if refit else 'no'} ({row_rule(count)})", file=sys.stderr)
    return replace(config, refit=refit)


@dataclass
class SplitRows:
    """The rows of each part, and whether validation had to reuse the training rows."""

    train: Rows
    validation: Rows
    test: Rows
    validation_is_train: bool


def split_rows(data: LabelledTexts, config: TrainConfig) -> SplitRows:
    """Stratified train/validation/test rows (see :func:`rnnonnx.data.split`); multi-label rows
    (whose labels are lists) are split at random (:func:`rnnonnx.multilabel.split_indices`)."""
    if data.label_sets is not None:
        from .multilabel import split_indices

        train, validation, test, reused = split_indices(len(data.texts), config.validation, config.test, config.seed)
        if reused:
            warn(f"only {len(data.texts)} rows: too few to hold out validation data, validating on the training rows")

        def pick_sets(indices: list[int]) -> Rows:
            return [data.texts[i] for i in indices], [data.label_sets[i] for i in indices]

        return SplitRows(pick_sets(train), pick_sets(validation), pick_sets(test), reused)
    parts = split(data.labels, config.validation, config.test, config.seed)
    if parts.rare:
        shown = ", ".join(f"{label!r} ({n} row{'s' if n > 1 else ''})" for label, n in sorted(parts.rare.items())[:10])
        more = f" and {len(parts.rare) - 10} more" if len(parts.rare) > 10 else ""
        warn(f"too few rows to validate and test class(es) {shown}{more}: they are trained on but not scored")
    if parts.validation_is_train:
        warn(f"only {len(data.texts)} rows: too few to hold out validation data, validating on the training rows")

    def pick(indices: list[int]) -> Rows:
        return [data.texts[i] for i in indices], [data.labels[i] for i in indices]

    return SplitRows(pick(parts.train), pick(parts.validation), pick(parts.test), parts.validation_is_train)


def train_run(
    config: TrainConfig,
    out_dir: str | Path,
    data: LabelledTexts | None = None,
    progress: bool = True,
    test_data: LabelledTexts | None = None,
    fixed: Iterable[str] = (),
) -> Metrics:
    """Train a classifier (or an ensemble) and write its run directory atomically.

    ``test_data``: the user's own test rows, scored at the end in place of a held-out split.
    ``fixed``: the options the user set, which ``--autotune`` keeps instead of searching.
    """
    data = data if data is not None else read_builtin()
    for message in data.warnings:
        warn(message)
    multi = data.label_sets is not None
    if multi and config.baseline:
        raise RnnonnxError("--baseline fits a multi-class baseline; for multi-label data see benchmarks/multilabel.py")
    if multi and config.autotune is not None:
        raise RnnonnxError("--autotune searches multi-class models; a multi-label run takes its options as given")
    if test_data is not None and (test_data.label_sets is not None) != multi:
        kinds = ("multi-label", "multi-class") if multi else ("multi-class", "multi-label")
        raise RnnonnxError(f"--test-file {test_data.source}: the training data is {kinds[0]}, the test file {kinds[1]}")
    if multi:
        from . import multilabel

        labels = multilabel.label_names(data.label_sets)
    else:
        labels = check_classes(data)
    config = replace(config, logit_adjustment=config.resolved_logit_adjustment(multi))
    inputs = [data.source] if os.path.isfile(data.source) else []  # the file the texts came from, if any
    inputs += [path for path in (test_data.source if test_data else None, config.vectors) if path and os.path.isfile(path)]
    check_output_directory(out_dir, is_run_dir, "run", inputs)  # refuse before training, not after it
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if test_data is not None and config.test > 0:
        raise RnnonnxError(f"--test-file replaces the held-out test split: drop --test {config.test:g} (or pass --test 0)")
    with member_pool(config.members, device, searching=config.autotune is not None) as pool:
        rows = split_rows(data, config)
        if test_data is not None:
            rows.test = own_test_rows(test_data, labels)
        max_len, config = resolve_max_len(config, rows.train[0], progress, multi)
        config = resolve_batch(config, len(rows.train[0]), progress)
        config = resolve_epochs(config, len(rows.train[0]), progress)
        config = resolve_refit(config, rows, progress)
        spec = TokenizerSpec(analyzer=config.analyzer, max_len=max_len)
        tokenizer = Tokenizer(spec, build_vocab(rows.train[0], spec, config.min_df, config.max_vocab))
        vectors, config = load_vectors(config, tokenizer.vocab, progress)
        label_index = {name: i for i, name in enumerate(labels)}

        def tensors(part: Rows) -> tuple[torch.Tensor, torch.Tensor]:
            ids = torch.from_numpy(tokenizer.encode_batch(part[0]))
            if multi:  # 0/1 targets [rows, labels]
                return ids, torch.from_numpy(multilabel.multi_hot(part[1], labels)[0])
            return ids, torch.tensor([label_index[n] for n in part[1]])

        started = time.perf_counter()
        tuned = None
        if config.autotune is not None:
            from .tuning import autotune

            tuned = autotune(config, rows, tokenizer, labels, vectors, device, fixed, progress)
            config, tokenizer, spec = tuned.config, tuned.tokenizer, tuned.tokenizer.spec
        train_ids, train_y = tensors(rows.train)
        val_ids, val_y = tensors(rows.validation)
        pooling = resolve_pooling(config.pooling, train_ids, max_len if config.max_len != "auto" else POOLING_REFERENCE_LEN)
        if progress and pooling != config.pooling:
            print(f"pooling {config.pooling}: {pooling}", file=sys.stderr)
        model_config = config.model_config(len(tokenizer.vocab), len(labels), pooling, multi_label=multi)
        shift: tuple[float, ...] = ()
        if multi:
            weights = _positive_weights(config, labels, train_y)
        else:
            counts = torch.bincount(train_y, minlength=len(labels)).tolist()
            weights, shift = config.class_weights(labels, counts), prior_shift(counts, config.logit_adjustment)
        if progress and shift:
            print(
                f"logit adjustment {config.logit_adjustment:g}: class logits shifted by {min(shift):+.3f} (most frequent) "
                f"to {max(shift):+.3f} (rarest)",
                file=sys.stderr,
            )
        job = FitJob(
            model_config, config, train_ids, train_y, val_ids, val_y, progress, weights, *vector_tensors(vectors), pool=pool
        )
        wants_linear = config.linear_weight != 0 and not multi
        wants_linear = wants_linear and not (config.linear_weight == AUTO and rows.validation_is_train)

        def fit_linear() -> LinearFitted | None:
            return fit_linear_member(config, tokenizer, rows, label_index, weights, device) if wants_linear else None

        fits, fitted = (tuned.fits, fit_linear()) if tuned is not None else fit_members(job, device, fit_linear)
        model = build_model(model_config).to(device)
        for member, fit in zip(model.members if isinstance(model, Ensemble) else [model], fits):
            member.load_state_dict(fit.state)
        linear = None
        if fitted is not None:
            linear = add_linear_member(model, config, tokenizer, fitted, device, progress, shift)
            model, tokenizer = linear.model, linear.tokenizer
            val_ids, val_y = tensors(rows.validation)
        if shift:
            set_logit_shift(model, shift)
        test = tensors(rows.test) if rows.test[0] else None
        if multi:
            if progress and config.calibrate:
                print("calibration: not applied to a multi-label model (per-label thresholds are tuned instead)", file=sys.stderr)
            refit = (lambda: refit_run(model, job, fits, device, progress)[0]) if config.refit else None
            return _finish_multilabel(
                config, out_dir, data, rows, model, tokenizer, labels, fits, weights, device, inputs, started, refit, test_data
            )
        calibration = _calibrate(model, config, rows, (val_ids, val_y), None if config.refit else test, device, progress)
        val_loss, val_acc = evaluate_loss(model, val_ids, val_y, device)
        refit = None
        if config.refit:
            choice = linear if linear is not None and linear.fit is not None else None

            def refit_linear_member() -> int | None:
                return refit_linear(choice, model, (val_ids, val_y), device, config.seed, weights) if choice else None

            refit, linear_epochs = refit_run(model, job, fits, device, progress, refit_linear_member)
            if linear_epochs is not None:
                refit["linear_epochs"] = linear_epochs
        if refit is not None and calibration is not None and test is not None:
            calibration = calibration_on_test(model, calibration, test, device)
        metrics = _metrics(config, fits, rows, val_loss, val_acc, started)
        metrics.calibration = calibration
        metrics.refit = refit
        metrics.vectors = vectors.record() if vectors is not None else None
        metrics.autotune = tuned.record if tuned is not None else None
        metrics.linear = linear.record if linear is not None else None
        if test is not None:
            metrics.test_loss, metrics.test_accuracy = evaluate_loss(model, *test, device)
        if config.baseline:
            from .baseline import baseline_metrics

            if progress:
                print("fitting the TF-IDF + logistic regression baseline on the same split", file=sys.stderr)
            metrics.baseline = baseline_metrics(
                rows.train, rows.validation, rows.test, spec, config.min_df, config.seed, config.refit
            )
        record = _config_record(config, model, data, rows, device, tokenizer, test_data)
        if tuned is not None:  # "training" holds the chosen recipe; this says which of it was searched
            record["autotune"] = {
                k: tuned.record[k] for k in ("budget_seconds", "trials", "best_trial", "best_val_accuracy", "best_params", "kept")
            }
        record["training"]["class_weights"] = dict(zip(labels, weights)) if weights is not None else None
        write_run(out_dir, model.state_dict(), record, tokenizer, labels, metrics, rows.validation, rows.test, inputs)
        return metrics


def _positive_weights(config: TrainConfig, labels: list[str], targets: torch.Tensor) -> list[float] | None:
    """``--class-weight`` of a multi-label run as binary cross-entropy's ``pos_weight``: each label's
    weight on its positive rows. ``balanced``: negatives / positives of that label in training (1
    for a label without positives); explicit weights: as given, unlisted labels 1."""
    if config.class_weight is None:
        return None
    positives = targets.sum(dim=0).tolist()
    if config.class_weight == "balanced":
        return [(len(targets) - p) / p if p > 0 else 1.0 for p in positives]
    return config.class_weights(labels, [int(p) for p in positives])


def _finish_multilabel(
    config: TrainConfig,
    out_dir: str | Path,
    data: LabelledTexts,
    rows: SplitRows,
    model: TextClassifier | Ensemble,
    tokenizer: Tokenizer,
    labels: list[str],
    fits: list[MemberFit],
    weights: list[float] | None,
    device: torch.device,
    inputs: list[str],
    started: float,
    refit: Callable[[], dict] | None = None,
    test_data: LabelledTexts | None = None,
) -> Metrics:
    """Tune each label's threshold on the validation rows (0.5 everywhere when validation reuses
    the training rows, on which any threshold looks good), score validation with them, ``refit``
    (``--refit``: the thresholds stay those tuned on validation, as the temperature does for a
    multi-class run), score test, and write the run; ``config.json`` records the task and the thresholds."""
    from . import multilabel

    def part(rows_of: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(tokenizer.encode_batch(rows_of[0])), torch.from_numpy(multilabel.multi_hot(rows_of[1], labels)[0])

    val_ids, val_y = part(rows.validation)
    val_proba = torch.sigmoid(logits_of(model, val_ids, device)).numpy()
    if rows.validation_is_train:
        warn("thresholds: 0.5 for every label, since the validation rows are the training rows")
        thresholds = [multilabel.DEFAULT_THRESHOLD] * len(labels)
    else:
        thresholds = multilabel.tune_thresholds(val_proba, val_y.numpy())
    val_loss, _, val_acc = evaluate_multilabel(model, val_ids, val_y, device)
    record = {"thresholds": dict(zip(labels, thresholds)), "validation": multilabel.scores(val_proba, val_y.numpy(), thresholds)}
    metrics = _metrics(config, fits, rows, val_loss, val_acc, started)
    metrics.refit = refit() if refit is not None else None
    if rows.test[0]:
        test_ids, test_y = part(rows.test)
        metrics.test_loss, _, metrics.test_accuracy = evaluate_multilabel(model, test_ids, test_y, device)
        record["test"] = multilabel.scores(torch.sigmoid(logits_of(model, test_ids, device)).numpy(), test_y.numpy(), thresholds)
    metrics.multilabel = record
    config_record = _config_record(config, model, data, rows, device, tokenizer, test_data)
    config_record["task"] = "multi-label"
    config_record["thresholds"] = thresholds
    config_record["training"]["class_weights"] = dict(zip(labels, weights)) if weights is not None else None
    write_run(out_dir, model.state_dict(), config_record, tokenizer, labels, metrics, rows.validation, rows.test, inputs)
    return metrics


def own_test_rows(test_data: LabelledTexts, labels: list[str]) -> Rows:
    """``--test-file``'s rows, checked against the training labels: a label the model cannot
    predict would make its test score meaningless, so it is refused, not skipped."""
    for message in test_data.warnings:
        warn(message)
    sets = test_data.label_sets
    unknown = sorted(({name for found in sets for name in found} if sets is not None else set(test_data.labels)) - set(labels))
    if unknown:
        shown = ", ".join(map(repr, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise RnnonnxError(f"{test_data.source}: label(s) the training data does not have: {shown}")
    return list(test_data.texts), list(sets if sets is not None else test_data.labels)


def load_vectors(config: TrainConfig, vocab: list[str], progress: bool) -> tuple[WordVectors | None, TrainConfig]:
    """``--vectors``: the file's rows for ``vocab``, and the config with the embedding size the
    file sets (a different ``--embed-dim`` is an error, not a silent projection)."""
    if config.vectors is None:
        return None, config
    from .vectors import read_vectors

    vectors = read_vectors(config.vectors, vocab)
    if config.embed_dim is not None and config.embed_dim != vectors.dim:
        raise RnnonnxError(
            f"--embed-dim {config.embed_dim} contradicts --vectors {config.vectors} ({vectors.dim} dimensions): "
            "drop --embed-dim, or pass the file's size"
        )
    if progress:
        print(vectors.summary(), file=sys.stderr)
    if not vectors.found:
        warn(f"--vectors {config.vectors}: not one vocabulary word is in it (another language, or --analyzer char?)")
    return vectors, replace(config, embed_dim=vectors.dim)


def vector_tensors(vectors: WordVectors | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The ``(rows, values)`` a :class:`FitJob` takes from pretrained vectors (``None`` twice without)."""
    if vectors is None:
        return None, None
    return torch.from_numpy(vectors.rows), torch.from_numpy(vectors.values)


def refit_run(
    model: TextClassifier | Ensemble,
    job: FitJob,
    fits: list[MemberFit],
    device: torch.device,
    progress: bool,
    beside: Callable[[], T] = lambda: None,
) -> tuple[dict, T]:
    """``--refit``: train every member again from its own seed on the training + validation rows,
    for the epochs early stopping chose for it, and load those weights into ``model``; meanwhile
    ``beside()`` (the linear member's refit), whose result comes back with the record.

    The temperature fitted on the validation rows before the refit is kept: once the model has
    learned those rows, they can no longer tell how over-confident it is on new ones, and the
    refitted model (same recipe, same epochs, 1/8 more rows) is as over-confident as the one it
    replaces. Its record (``metrics.json``'s ``refit``) gives the rows, epochs and seconds; the
    validation scores of the run are the early-stopped model's, the test scores the refitted one's.
    """
    started = time.perf_counter()
    epochs = [fit.best_epoch for fit in fits]
    if progress:
        print(
            f"refit on training + validation rows ({len(job.train_ids) + len(job.val_ids)}) for epoch(s) {epochs}",
            file=sys.stderr,
        )
    width = max(job.train_ids.shape[1], job.val_ids.shape[1])
    refit_job = replace(
        job,
        train_ids=torch.cat([_pad_to(job.train_ids, width), _pad_to(job.val_ids, width)]),
        train_y=torch.cat([job.train_y, job.val_y]),
        refit_epochs=epochs,
        on_epoch=None,
        deadline=None,
    )
    refits, result = fit_members(refit_job, device, beside)
    for member, fit in zip(model.members if isinstance(model, Ensemble) else [model], refits):
        member.load_state_dict(fit.state)
    return {"rows": len(refit_job.train_ids), "epochs": epochs, "seconds": round(time.perf_counter() - started, 2)}, result


@dataclass
class LinearChoice:
    """The model and tokenizer after :func:`add_linear_member`, the member's fit (``None`` when
    the blend left it out) and its record (``metrics.json``'s ``linear``)."""

    model: TextClassifier | Ensemble
    tokenizer: Tokenizer
    fit: "LinearFit | None"
    record: dict
    train_ids: torch.Tensor
    train_y: torch.Tensor


@dataclass
class LinearFitted:
    """The linear member fitted on its own (:func:`fit_linear_member`), before its share is chosen:
    the tokenizer that reads ``linear_max_len`` tokens, the training and validation rows read by it,
    the fit, how its bigrams were indexed, and the seconds all that took."""

    reader: Tokenizer
    train: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor]
    fit: "LinearFit"
    bigrams: str
    seconds: float


def fit_linear_member(
    config: TrainConfig,
    tokenizer: Tokenizer,
    rows: SplitRows,
    label_index: dict[str, int],
    weights: list[float] | None,
    device: torch.device,
) -> LinearFitted:
    """Fit the linear member (:mod:`rnnonnx.linear`) on the training rows read up to
    ``linear_max_len`` tokens. It needs nothing of the recurrent members, so a run fits it while
    they train (:func:`rnnonnx.workers.fit_members`)."""
    from . import linear as linear_model

    started = time.perf_counter()
    counts = [len(tokenizer.spec.tokens(text)) for text in rows.train[0]]
    read_len = config.resolved_linear_max_len(counts, tokenizer.spec.max_len)
    reader = Tokenizer(replace(tokenizer.spec, max_len=read_len), tokenizer.vocab)

    def encoded(part: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(reader.encode_batch(part[0])), torch.tensor([label_index[n] for n in part[1]])

    train, validation = encoded(rows.train), encoded(rows.validation)
    if config.linear_buckets == AUTO:
        member = linear_model.LinearMember.exact(train[0], len(reader.vocab), len(label_index), NGRAM_PRIME)
        bigrams = f"{int((member.bigram_keys >= 0).sum())} known bigrams in {member.buckets} rows"
    else:
        member = linear_model.LinearMember(len(reader.vocab), config.linear_buckets, len(label_index), NGRAM_PRIME)
        bigrams = f"bigrams hashed into {member.buckets} rows"
    fit = linear_model.fit_linear(member, train, validation, device, config.seed, weights)
    return LinearFitted(reader, train, validation, fit, bigrams, time.perf_counter() - started)


def add_linear_member(
    model: TextClassifier | Ensemble,
    config: TrainConfig,
    tokenizer: Tokenizer,
    fitted: LinearFitted,
    device: torch.device,
    progress: bool,
    shift: tuple[float, ...] = (),
) -> LinearChoice:
    """Choose the share of the ``fitted`` linear member (:func:`fit_linear_member`) on the
    validation rows against the fitted recurrent members, read with the model's logit ``shift``
    (or take ``--linear-weight``), and return the model that blends them, with the tokenizer that
    reads as far as the linear member. A share of 0 returns ``model`` and ``tokenizer`` as they were."""
    from . import linear as linear_model

    started = time.perf_counter()
    reader, train, validation, fit = fitted.reader, fitted.train, fitted.validation, fitted.fit
    member, read_len = fit.member, reader.spec.max_len
    recurrent = torch.softmax(logits_of(model, validation[0][:, : tokenizer.spec.max_len], device), dim=-1).float()
    linear = torch.softmax(linear_model.logits_of(fit.member, validation[0], device), dim=-1)
    if config.linear_weight == AUTO:
        weight, tried = linear_model.choose_weight(recurrent, linear, validation[1], shift)
    else:
        weight, tried = float(config.linear_weight), {}
    record = {
        "weight": weight,
        "chosen_on_validation": config.linear_weight == AUTO,
        "val_accuracy_by_weight": tried,
        "member_val_accuracy": round(fit.val_accuracy, 6),
        "best_epoch": fit.best_epoch,
        "buckets": member.buckets,
        "bigrams": fitted.bigrams,
        "max_len": read_len,
        "batch_size": fit.batch,
        "lr": fit.lr,
        "seconds": round(fitted.seconds + time.perf_counter() - started, 2),
    }
    if progress:
        print(
            f"linear member: val_acc {fit.val_accuracy:.4f} alone (epoch {fit.best_epoch}, batch {fit.batch}), "
            f"reads {read_len} tokens, "
            f"{fitted.bigrams}; "
            f"weight {weight:g}" + (" (chosen on validation)" if config.linear_weight == AUTO else ""),
            file=sys.stderr,
        )
    if weight == 0:
        return LinearChoice(model, tokenizer, None, record, train[0], train[1])
    blended = replace(
        model.config,
        linear_weight=weight,
        linear_buckets=member.buckets,
        linear_groups=member.groups,
        recurrent_len=tokenizer.spec.max_len,
    )
    ensemble = build_model(blended).to(device)
    for target, source in zip(ensemble.members, model.members if isinstance(model, Ensemble) else [model]):
        target.load_state_dict(source.state_dict())
    ensemble.linear.load_state_dict(fit.member.state_dict())
    return LinearChoice(ensemble, reader, fit, record, train[0], train[1])


def refit_linear(
    choice: LinearChoice,
    model: Ensemble,
    validation: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    seed: int,
    weights: list[float] | None,
) -> int:
    """``--refit`` for the linear member: train it again on the training + validation rows for
    the epochs its early stopping chose, into ``model``; returns that epoch count."""
    from .linear import fit_linear

    assert choice.fit is not None and model.linear is not None
    width = max(choice.train_ids.shape[1], validation[0].shape[1])
    ids = torch.cat([_pad_to(choice.train_ids, width), _pad_to(validation[0], width)])
    targets = torch.cat([choice.train_y, validation[1]])
    refitted = fit_linear(
        model.linear.untrained(),
        (ids, targets),
        None,
        device,
        seed,
        weights,
        epochs=choice.fit.best_epoch,
        batch=(choice.fit.batch, choice.fit.lr),
    )
    model.linear.load_state_dict(refitted.member.state_dict())
    model.linear.to(device)
    return choice.fit.best_epoch


def _pad_to(ids: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=PAD_ID)


def calibration_on_test(
    model: TextClassifier | Ensemble, calibration: dict, test: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> dict:
    """The calibration record with the test rows scored by the shipped (refitted) model, before and
    after its temperature; the validation part stays the early-stopped model's, on which ``T`` was fitted."""
    from . import calibration as calibrating

    temperature = model.config.temperature
    set_temperature(model, 1.0)
    logits = logits_of(model, test[0], device).numpy()
    set_temperature(model, temperature)
    return calibration | {"test": calibrating.record(temperature, {"test": (logits, test[1].numpy())})["test"]}


def logits_of(model: TextClassifier | Ensemble, ids: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """The model's logits (an ensemble's log mean probability) for every row, in row order, on the CPU."""
    model.eval()
    logits = torch.zeros((len(ids), model.config.num_classes), dtype=torch.float64)
    with torch.no_grad():
        for batch, rows in batches(ids, torch.arange(len(ids)), batch_size, None):  # batched by length
            logits[rows] = model(batch.to(device)).cpu().double()
    return logits


def _calibrate(
    model: TextClassifier | Ensemble,
    config: TrainConfig,
    rows: SplitRows,
    validation: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
    progress: bool,
) -> dict | None:
    """Fit the temperature on the validation logits and set it on ``model``; the record of
    NLL/ECE/Brier before and after, on validation and test, for ``metrics.json``. Skipped (``None``)
    with ``--no-calibrate``, or when validation reuses the training rows (a temperature fitted on
    rows the model learned would only make it more over-confident)."""
    from . import calibration

    if not config.calibrate:
        return None
    if rows.validation_is_train:
        warn("no calibration: the validation rows are the training rows")
        return None
    parts = {"validation": (logits_of(model, validation[0], device).numpy(), validation[1].numpy())}
    if test is not None:
        parts["test"] = (logits_of(model, test[0], device).numpy(), test[1].numpy())
    temperature = calibration.fit_temperature(*parts["validation"])
    if not calibration.MIN_TEMPERATURE * 1.001 < temperature < calibration.MAX_TEMPERATURE / 1.001:
        warn(
            f"calibration: the temperature stopped at its bound ({temperature:.3g}): the validation rows are "
            f"{'all predicted right' if temperature < 1 else 'close to chance'}; its probabilities say little"
        )
    set_temperature(model, temperature)
    record = calibration.record(temperature, parts)
    if progress:
        shown = record.get("test", record["validation"])
        name = "test" if "test" in record else "validation"
        print(
            f"calibration: temperature {temperature:.3f}; {name} ECE {shown['before']['ece']:.4f} -> {shown['after']['ece']:.4f}",
            file=sys.stderr,
        )
    return record


def _metrics(
    config: TrainConfig, fits: list[MemberFit], rows: SplitRows, val_loss: float, val_acc: float, started: float
) -> Metrics:
    """The record every run starts from, multi-class or multi-label: the first member's history,
    the validation scores, each member's record and the time so far."""
    return Metrics(
        epochs=fits[0].history,
        best_epoch=fits[0].best_epoch,
        monitor=config.monitor,
        val_loss=val_loss,
        val_accuracy=val_acc,
        validation_is_train=rows.validation_is_train,
        train_seconds=round(time.perf_counter() - started, 2),
        members=_member_records(fits),
    )


def _member_records(fits: list[MemberFit]) -> list[MemberRecord]:
    """Each member's kept epoch and scores there; none for a single classifier."""
    if len(fits) == 1:
        return []
    return [
        MemberRecord(
            f.seed, f.best_epoch, f.history[f.best_epoch - 1]["val_accuracy"], f.history[f.best_epoch - 1]["val_loss"], f.history
        )
        for f in fits
    ]


def _config_record(
    config: TrainConfig,
    model: TextClassifier | Ensemble,
    data: LabelledTexts,
    rows: SplitRows,
    device: torch.device,
    tokenizer: Tokenizer,
    test_data: LabelledTexts | None,
) -> dict:
    """``config.json``'s content: what rebuilds the model, how it was trained (with the max length
    ``--max-len auto`` resolved to), on what data (and which ``--test-file``)."""
    return {
        "rnnonnx_version": __version__,
        "model": model.config.to_dict(),
        "training": config.to_dict()
        | {"device": str(device), "resolved_max_len": model.config.recurrent_len or tokenizer.spec.max_len},
        "data": {
            "source": data.source,
            "credit": BUILTIN_CREDIT if data.source.startswith("built-in:") else None,
            "rows": len(data.texts),
            "skipped_empty": data.skipped_empty,
            "train": len(rows.train[0]),
            "validation": len(rows.validation[0]),
            "test": len(rows.test[0]),
            "test_source": test_data.source if test_data is not None else None,
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }

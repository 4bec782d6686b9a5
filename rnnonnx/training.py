"""Training a run: vocabulary (scikit-learn), split, the members' fit, scores, the run directory.

The epoch loop and the worker pool live in :mod:`rnnonnx.fitting`; the run directory's layout
in :mod:`rnnonnx.run`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import TrainConfig
from .data import BUILTIN_CREDIT, LabelledTexts, check_classes, read_builtin, split, warn
from .errors import RnnonnxError
from .files import check_output_directory
from .fitting import FitJob, MemberFit, batches, evaluate_loss, fit_members, resolve_device, seed_everything
from .model import Ensemble, TextClassifier, build_model, set_temperature
from .run import MemberRecord, Metrics, is_run_dir, write_run
from .text import PAD_ID, PAD_TOKEN, UNK_TOKEN, Tokenizer, TokenizerSpec

Rows = tuple[list[str], list[str]]


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


def resolve_pooling(pooling: str, ids: torch.Tensor, max_len: int) -> str:
    """``auto``: ``max`` when the median training text is longer than half of ``max_len``, else
    ``last``; any other choice stands. ``ids`` are the encoded texts: truncation at ``max_len``
    does not move a median across ``max_len / 2``, and unknown tokens keep their place."""
    if pooling != "auto":
        return pooling
    lengths = (ids != PAD_ID).sum(dim=1).sort().values
    return "max" if int(lengths[len(lengths) // 2]) > max_len / 2 else "last"


# With ``--max-len auto`` the pooling rule keeps its reference length of 64 tokens (max pooling once
# the median text passes 32 tokens): a resolved max_len follows the longest texts, not the typical
# one, and would tip sets like debian-en (median 57) to final-step pooling, 2 points worse there.
POOLING_REFERENCE_LEN = 64


def resolve_max_len(config: TrainConfig, texts: list[str], progress: bool = False) -> int:
    """The number of tokens the model reads: ``--max-len`` itself, or for ``auto`` a high percentile
    of the training texts' token counts (:meth:`TrainConfig.resolved_max_len`), said aloud."""
    if config.max_len != "auto":
        return int(config.max_len)
    spec = TokenizerSpec(analyzer=config.analyzer)
    max_len = config.resolved_max_len([len(spec.tokens(text)) for text in texts])
    if progress:
        print(f"max_len auto: {max_len}", file=sys.stderr)
    return max_len


@dataclass
class SplitRows:
    """The rows of each part, and whether validation had to reuse the training rows."""

    train: Rows
    validation: Rows
    test: Rows
    validation_is_train: bool


def split_rows(data: LabelledTexts, config: TrainConfig) -> SplitRows:
    """Stratified train/validation/test rows (see :func:`rnnonnx.data.split`)."""
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


def train_run(config: TrainConfig, out_dir: str | Path, data: LabelledTexts | None = None, progress: bool = True) -> Metrics:
    """Train a classifier (or an ensemble) and write its run directory atomically."""
    data = data if data is not None else read_builtin()
    for message in data.warnings:
        warn(message)
    labels = check_classes(data)
    inputs = [data.source] if os.path.isfile(data.source) else []  # the file the texts came from, if any
    check_output_directory(out_dir, is_run_dir, "run", inputs)  # refuse before training, not after it
    seed_everything(config.seed)
    device = resolve_device(config.device)
    rows = split_rows(data, config)
    max_len = resolve_max_len(config, rows.train[0], progress)
    spec = TokenizerSpec(analyzer=config.analyzer, max_len=max_len)
    tokenizer = Tokenizer(spec, build_vocab(rows.train[0], spec, config.min_df, config.max_vocab))
    label_index = {name: i for i, name in enumerate(labels)}

    def tensors(part: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(tokenizer.encode_batch(part[0])), torch.tensor([label_index[n] for n in part[1]])

    train_ids, train_y = tensors(rows.train)
    val_ids, val_y = tensors(rows.validation)
    pooling = resolve_pooling(config.pooling, train_ids, max_len if config.max_len != "auto" else POOLING_REFERENCE_LEN)
    if progress and pooling != config.pooling:
        print(f"pooling {config.pooling}: {pooling}", file=sys.stderr)
    model_config = config.model_config(len(tokenizer.vocab), len(labels), pooling)
    weights = config.class_weights(labels, torch.bincount(train_y, minlength=len(labels)).tolist())
    started = time.perf_counter()
    fits = fit_members(FitJob(model_config, config, train_ids, train_y, val_ids, val_y, progress, weights), device)
    model = build_model(model_config).to(device)
    for member, fit in zip(model.members if isinstance(model, Ensemble) else [model], fits):
        member.load_state_dict(fit.state)
    test = tensors(rows.test) if rows.test[0] else None
    calibration = _calibrate(model, config, rows, (val_ids, val_y), test, device, progress)
    val_loss, val_acc = evaluate_loss(model, val_ids, val_y, device)
    metrics = Metrics(
        epochs=fits[0].history,
        best_epoch=fits[0].best_epoch,
        monitor=config.monitor,
        val_loss=val_loss,
        val_accuracy=val_acc,
        validation_is_train=rows.validation_is_train,
        train_seconds=round(time.perf_counter() - started, 2),
        members=_member_records(fits),
        calibration=calibration,
    )
    if test is not None:
        metrics.test_loss, metrics.test_accuracy = evaluate_loss(model, *test, device)
    if config.baseline:
        from .baseline import baseline_metrics

        if progress:
            print("fitting the TF-IDF + logistic regression baseline on the same split", file=sys.stderr)
        metrics.baseline = baseline_metrics(rows.train, rows.validation, rows.test, spec, config.min_df, config.seed)
    record = _config_record(config, model, data, rows, device)
    record["training"]["class_weights"] = dict(zip(labels, weights)) if weights is not None else None
    record["training"]["resolved_max_len"] = max_len
    write_run(out_dir, model.state_dict(), record, tokenizer, labels, metrics, rows.validation, rows.test, inputs)
    return metrics


def logits_of(model: TextClassifier | Ensemble, ids: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """The model's logits (an ensemble's log mean probability) for every row, in row order, on the CPU."""
    model.eval()
    with torch.no_grad():
        parts = [model(batch.to(device)).cpu() for batch, _ in batches(ids, torch.zeros(len(ids)), batch_size, None)]
    return torch.cat(parts).double() if parts else torch.zeros((0, model.config.num_classes), dtype=torch.float64)


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
    config: TrainConfig, model: TextClassifier | Ensemble, data: LabelledTexts, rows: SplitRows, device: torch.device
) -> dict:
    """``config.json``'s content: what rebuilds the model, how it was trained, on what data."""
    return {
        "rnnonnx_version": __version__,
        "model": model.config.to_dict(),
        "training": config.to_dict() | {"device": str(device)},
        "data": {
            "source": data.source,
            "credit": BUILTIN_CREDIT if data.source.startswith("built-in:") else None,
            "rows": len(data.texts),
            "skipped_empty": data.skipped_empty,
            "train": len(rows.train[0]),
            "validation": len(rows.validation[0]),
            "test": len(rows.test[0]),
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }

"""Fitting classifiers: the epoch loop with early stopping.

An ensemble's members are fitted independently, each with its own seed and early stopping; on
the CPU they train side by side in worker processes (:mod:`rnnonnx.workers`).
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .config import ModelConfig, TrainConfig
from .errors import RnnonnxError
from .model import Ensemble, TextClassifier
from .optimizer import adam, clip_gradients, sparse_embeddings
from .progress import Progress, bar

if TYPE_CHECKING:
    from .workers import MemberPool


def resolve_device(device: str) -> torch.device:
    """``auto`` means CUDA when PyTorch sees a GPU; ``cuda`` without one is an error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RnnonnxError("--device cuda: PyTorch sees no CUDA GPU (install a CUDA build of torch, or use --device cpu)")
    if device not in ("cpu", "cuda"):
        raise RnnonnxError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Same seed, same model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def member_seed(seed: int, member: int) -> int:
    """The seed of an ensemble member; the first keeps the run's seed, so one member is a plain run."""
    return seed + 1000 * member


@dataclass
class FitJob:
    """What every member of a run is fitted on: the configs and the encoded train/validation rows."""

    model: ModelConfig
    training: TrainConfig
    train_ids: torch.Tensor
    train_y: torch.Tensor
    val_ids: torch.Tensor
    val_y: torch.Tensor
    progress: bool = True
    # The loss weight of each class (``--class-weight``), or None for plain cross-entropy. For a
    # multi-label model (targets [rows, labels] of 0/1), the weight of each label's positives
    # (binary cross-entropy's ``pos_weight``).
    class_weights: list[float] | None = None
    # Pretrained word vectors (``--vectors``): the token ids whose embedding rows start from
    # ``vector_values`` rather than at random (frozen with ``--freeze-embeddings``).
    vector_rows: torch.Tensor | None = None
    vector_values: torch.Tensor | None = None
    # A refit (``--refit``): each member's epoch count, trained through with no validation, the
    # validation rows being part of ``train_ids`` by then.
    refit_epochs: list[int] | None = None
    # For the autotune search, in this process only: called with (member, epoch's history row)
    # after each epoch (it may raise to stop the fit), and a ``time.monotonic()`` deadline past
    # which the fit stops with :class:`OutOfTime` after the current batch.
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    deadline: float | None = None
    # The run's worker pool (:func:`rnnonnx.workers.member_pool`), in this process only; without
    # one, fitting members in workers starts a pool of its own.
    pool: "MemberPool | None" = None


class OutOfTime(RnnonnxError):
    """A fit passed its :attr:`FitJob.deadline`; ``partial`` is the member at its best epoch so far
    (``None`` before its first epoch ended), which a search may still keep."""

    def __init__(self, message: str, partial: "MemberFit | None" = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class MemberFit:
    """One fitted classifier: its weights at the kept epoch and its per-epoch history."""

    seed: int
    state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int


def batches(
    ids: torch.Tensor, targets: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of the rows :func:`batch_rows` chooses, cut to their longest text."""
    lengths = (ids != 0).sum(dim=1)
    for chosen in batch_rows(lengths, batch_size, generator):
        width = max(1, int(lengths[chosen].max()))
        yield ids[chosen, :width], targets[chosen]


def batch_rows(lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """The rows of each batch, texts of similar length together, so the recurrent layers step
    through far less padding (a training epoch on the built-in sentences takes about half the time).
    For training (``generator`` given) the rows are shuffled, sorted by length within pools of 50
    batches and the batches shuffled again, so batches stay random; for scoring, all the rows are
    sorted by length (a text's scores do not depend on its batch-mates)."""
    if generator is None:
        return list(torch.argsort(lengths, stable=True).split(batch_size))
    order = torch.randperm(len(lengths), generator=generator)
    chosen_rows = []
    for pool in order.split(50 * batch_size):
        chosen_rows += list(pool[torch.argsort(lengths[pool], stable=True)].split(batch_size))
    return [chosen_rows[k] for k in torch.randperm(len(chosen_rows), generator=generator).tolist()]


def evaluate_loss(
    model: TextClassifier | Ensemble,
    ids: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
    class_weights: list[float] | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, in eval mode. With ``class_weights``, the loss is the
    weighted mean the training minimises (each row weighs its class's weight), so ``--monitor
    val_loss`` follows the same objective on the validation rows."""
    model.eval()
    total_loss, total_weight, correct = 0.0, 0.0, 0
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    loss_fn = nn.CrossEntropyLoss(reduction="sum", weight=weight.to(device) if weight is not None else None)
    with torch.no_grad():
        for batch, target in batches(ids, targets, batch_size, None):
            logits = model(batch.to(device))
            total_loss += float(loss_fn(logits, target.to(device)))
            total_weight += float(weight[target].sum()) if weight is not None else len(target)
            correct += int((logits.argmax(dim=1).cpu() == target).sum())
    return total_loss / total_weight, correct / len(ids)


def evaluate_multilabel(
    model: TextClassifier | Ensemble,
    ids: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
    pos_weight: list[float] | None = None,
) -> tuple[float, float, float]:
    """A multi-label model's mean binary cross-entropy (per row and label, as training minimises
    it), micro-F1 and subset accuracy (every label right), each label predicted when its
    probability is at least 0.5, in eval mode. Micro-F1 is what early stopping watches: unlike
    subset accuracy it credits a text with most of its labels right."""
    model.eval()
    weight = torch.tensor(pos_weight, dtype=torch.float32, device=device) if pos_weight is not None else None
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum", pos_weight=weight)
    total_loss, tp, fp, fn, exact = 0.0, 0, 0, 0, 0
    with torch.no_grad():
        for batch, target in batches(ids, targets, batch_size, None):
            logits = model(batch.to(device))
            target = target.to(device)
            total_loss += float(loss_fn(logits, target))
            chosen, truth = logits >= 0, target > 0.5
            tp += int((chosen & truth).sum())
            fp += int((chosen & ~truth).sum())
            fn += int((~chosen & truth).sum())
            exact += int((chosen == truth).all(dim=1).sum())
    cells = max(1, targets.numel())
    return total_loss / cells, (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0), exact / max(1, len(ids))


def fit_member(job: FitJob, member: int, device: torch.device, live: bool = True) -> MemberFit:
    """Train one classifier with Adam, keeping the epoch that is best on the ``--monitor`` metric
    and stopping after ``--patience`` epochs without improvement. A multi-label model minimises
    binary cross-entropy, and ``val_accuracy`` monitoring watches its validation micro-F1."""
    config = job.training
    seed = member_seed(config.seed, member)
    seed_everything(seed)
    model = TextClassifier(job.model).to(device)
    sparse_embeddings(model, device)
    if job.vector_rows is not None:
        init_embedding(model, job.vector_rows, job.vector_values, config.freeze_embeddings)
    batch_size, lr = config.resolved_batch(len(job.train_ids))  # a run resolves "auto" once, before its fit
    optimizer = adam(model.parameters(), lr, device)
    weight = torch.tensor(job.class_weights, dtype=torch.float32, device=device) if job.class_weights is not None else None
    multi = job.model.multi_label
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight) if multi else nn.CrossEntropyLoss(weight=weight)
    generator = torch.Generator().manual_seed(seed)
    name = f"member {member + 1}/{job.model.members} " if job.model.members > 1 else ""
    history: list[dict[str, float]] = []
    best_state, best_key, best_epoch, stale = None, (math.inf,), 0, 0
    steps = math.ceil(len(job.train_ids) / batch_size)
    epochs = job.refit_epochs[member] if job.refit_epochs is not None else config.resolved_epochs(len(job.train_ids))
    for epoch in range(1, epochs + 1):
        model.train()
        seen, step, loss_sum, correct = 0, 0, 0.0, 0
        label = f"{'refit ' if job.refit_epochs is not None else ''}{name}epoch {epoch}/{epochs}"
        line = Progress(job.progress, live)
        for batch, target in batches(job.train_ids, job.train_y, batch_size, generator):
            batch, target = batch.to(device), target.to(device)
            optimizer.zero_grad()
            logits = model(batch)
            loss = loss_fn(logits, target)
            if not torch.isfinite(loss):
                raise RnnonnxError(f"{name}epoch {epoch}: the training loss became {float(loss)} (try a lower --lr)")
            loss.backward()
            optimizer.densify()
            clip_gradients(model.parameters(), 5.0)
            optimizer.step()
            seen, step = seen + len(target), step + 1
            loss_sum += loss.item() * len(target)
            if multi:
                correct += int(((logits >= 0) == (target > 0.5)).all(dim=1).sum())
            else:
                correct += int((logits.argmax(dim=1) == target).sum())
            line.show(f"{label} {bar(step, steps)} loss {loss_sum / seen:.4f} acc {correct / seen:.3f}")
            if job.deadline is not None and time.monotonic() > job.deadline:
                partial = (
                    MemberFit(seed, {k: v.detach().cpu() for k, v in best_state.items()}, history, best_epoch)
                    if best_state
                    else None
                )
                raise OutOfTime(f"{name}epoch {epoch}: out of time", partial)
        if job.refit_epochs is not None:
            line.finish(f"{label} [{step}/{steps}] {line.elapsed:.1f}s loss {loss_sum / seen:.4f} acc {correct / seen:.3f}")
            history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen})
            continue
        if multi:
            val_loss, val_f1, val_acc = evaluate_multilabel(model, job.val_ids, job.val_y, device, pos_weight=job.class_weights)
        else:
            val_loss, val_acc = evaluate_loss(model, job.val_ids, job.val_y, device, class_weights=job.class_weights)
        line.finish(
            f"{label} [{step}/{steps}] {line.elapsed:.1f}s loss {loss_sum / seen:.4f} acc {correct / seen:.3f} | "
            f"val_loss {val_loss:.4f} val_acc {val_acc:.3f}" + (f" val_micro_f1 {val_f1:.3f}" if multi else "")
        )
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                **({"val_micro_f1": val_f1} if multi else {}),
            }
        )
        if job.on_epoch is not None:
            job.on_epoch(member, history[-1])
        score = val_f1 if multi else val_acc
        key = (-score, val_loss) if config.monitor == "val_accuracy" else (val_loss,)
        if key < best_key:
            best_key, best_epoch, stale = key, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                print(
                    f"{name}early stop: no {'val_micro_f1' if multi and config.monitor == 'val_accuracy' else config.monitor} "
                    f"improvement for {config.patience} epoch(s); "
                    f"keeping epoch {best_epoch}",
                    file=sys.stderr,
                )
                break
    if job.refit_epochs is not None:
        return MemberFit(seed, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, history, epochs)
    if best_state is None:
        raise RnnonnxError(f"{name}validation loss is not a number: the model diverged (try a lower --lr)")
    return MemberFit(seed, {k: v.detach().cpu() for k, v in best_state.items()}, history, best_epoch)


def init_embedding(model: TextClassifier, rows: torch.Tensor, values: torch.Tensor, freeze: bool) -> None:
    """Start the embedding ``rows`` from pretrained ``values``; ``freeze``: their gradient is zeroed,
    so Adam never moves them, while the rows of words the vectors do not cover still learn."""
    weight = model.embedding.weight
    with torch.no_grad():
        weight[rows.to(weight.device)] = values.to(weight.device, weight.dtype)
    if freeze:
        keep = torch.ones(weight.shape[0], 1, device=weight.device)
        keep[rows.to(weight.device)] = 0.0

        def frozen(grad: torch.Tensor) -> torch.Tensor:
            if grad.is_sparse:
                indices = grad._indices()
                values = grad._values() * keep[indices[0]]
                return torch.sparse_coo_tensor(indices, values, grad.shape, check_invariants=False)
            return grad * keep

        weight.register_hook(frozen)

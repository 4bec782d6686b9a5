"""Fitting a classifier: vocabulary (scikit-learn), split, Adam with early stopping, run directory.

An ensemble's members are fitted independently, each with its own seed and early stopping; on
the CPU they train side by side in worker processes, one per core.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .bench import usable_cores
from .data import BUILTIN_CREDIT, LabelledTexts, check_classes, read_builtin, split, warn
from .config import MONITORS, TrainConfig
from .errors import RnnonnxError
from .files import atomic_directory, check_output_directory
from .model import Ensemble, ModelConfig, TextClassifier, build_model
from .run import RUN_FORMAT, WEIGHTS, is_run_dir, write_jsonl
from .text import PAD_ID, PAD_TOKEN, UNK_TOKEN, Tokenizer, TokenizerSpec


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


def _batches(ids: torch.Tensor, targets: torch.Tensor, batch_size: int, generator: torch.Generator | None):
    """Batches cut to their longest text. For training (``generator`` given) the rows are
    shuffled, sorted by length within pools of 50 batches and the batches shuffled again: texts
    of similar length share a batch, so the recurrent layers step through far less padding
    (an epoch on the built-in sentences takes about half the time) while batches stay random."""
    lengths = (ids != 0).sum(dim=1)
    if generator is None:
        batches = list(torch.arange(len(ids)).split(batch_size))
    else:
        order = torch.randperm(len(ids), generator=generator)
        batches = []
        for pool in order.split(50 * batch_size):
            batches += list(pool[torch.argsort(lengths[pool], stable=True)].split(batch_size))
        batches = [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]
    for chosen in batches:
        width = max(1, int(lengths[chosen].max()))
        yield ids[chosen, :width], targets[chosen]


def evaluate_loss(model: TextClassifier | Ensemble, ids: torch.Tensor, targets: torch.Tensor, device: torch.device, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with torch.no_grad():
        for batch, target in _batches(ids, targets, batch_size, None):
            logits = model(batch.to(device))
            total_loss += float(loss_fn(logits, target.to(device)))
            correct += int((logits.argmax(dim=1).cpu() == target).sum())
    return total_loss / len(ids), correct / len(ids)


@dataclass
class MemberFit:
    """One fitted classifier: its weights at the kept epoch and its per-epoch history."""

    seed: int
    state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int


def member_seed(seed: int, member: int) -> int:
    """The seed of an ensemble member; the first keeps the run's seed, so one member is a plain run."""
    return seed + 1000 * member


def fit_member(model_config: ModelConfig, config: TrainConfig, member: int, train_data: tuple[torch.Tensor, torch.Tensor],
               val_data: tuple[torch.Tensor, torch.Tensor], device: torch.device, progress: bool, live: bool = True,
               threads: int | None = None) -> MemberFit:
    """Train one classifier with Adam, keeping the epoch that is best on the ``--monitor`` metric
    and stopping after ``--patience`` epochs without improvement."""
    if threads is not None:
        torch.set_num_threads(threads)
    seed = member_seed(config.seed, member)
    seed_everything(seed)
    train_ids, train_y = train_data
    val_ids, val_y = val_data
    model = TextClassifier(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    name = f"member {member + 1}/{model_config.members} " if model_config.members > 1 else ""
    history: list[dict[str, float]] = []
    best_state, best_key, best_epoch, stale = None, (math.inf,), 0, 0
    steps = math.ceil(len(train_ids) / config.batch_size)
    for epoch in range(1, config.epochs + 1):
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = _progress(steps, f"{name}epoch {epoch}/{config.epochs}", progress, live)
        for batch, target in _batches(train_ids, train_y, config.batch_size, generator):
            batch, target = batch.to(device), target.to(device)
            optimizer.zero_grad()
            logits = model(batch)
            loss = loss_fn(logits, target)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            seen += len(target)
            loss_sum += loss.item() * len(target)
            correct += int((logits.argmax(dim=1) == target).sum())
            bar.update(1, f"loss {loss_sum / seen:.4f} acc {correct / seen:.3f}")
        val_loss, val_acc = evaluate_loss(model, val_ids, val_y, device)
        bar.finish(f"loss {loss_sum / seen:.4f} acc {correct / seen:.3f} | val_loss {val_loss:.4f} val_acc {val_acc:.3f}")
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen, "val_loss": val_loss, "val_accuracy": val_acc})
        key = (-val_acc, val_loss) if config.monitor == "val_accuracy" else (val_loss,)
        if key < best_key:
            best_key, best_epoch, stale = key, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                print(f"{name}early stop: no {config.monitor} improvement for {config.patience} epoch(s); keeping epoch {best_epoch}", file=sys.stderr)
                break
    return MemberFit(seed, {k: v.detach().cpu() for k, v in best_state.items()}, history, best_epoch)


def _fit_members(model_config: ModelConfig, config: TrainConfig, train_data: tuple[torch.Tensor, torch.Tensor],
                 val_data: tuple[torch.Tensor, torch.Tensor], device: torch.device, progress: bool) -> list[MemberFit]:
    """Every member: here, one after another (a single member, or a GPU), or on the CPU in
    worker processes, one per core. Workers are fresh interpreters (``python -m
    rnnonnx.training``) that exchange safetensors and JSON files, so they never re-run the
    caller's script (as multiprocessing's spawn would) and each member is the same whichever
    way it was trained with the same thread count."""
    count = model_config.members
    workers = min(count, usable_cores()) if device.type == "cpu" else 1
    if workers == 1:
        return [fit_member(model_config, config, k, train_data, val_data, device, progress) for k in range(count)]
    import subprocess
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="rnnonnx-members-") as tmp:
        work = Path(tmp)
        tensors = {"train_ids": train_data[0], "train_y": train_data[1], "val_ids": val_data[0], "val_y": val_data[1]}
        save_file({k: v.clone() for k, v in tensors.items()}, str(work / "data.safetensors"))
        job = {"model": model_config.to_dict(), "training": asdict(config), "progress": progress,
               "threads": max(1, usable_cores() // workers)}
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        waiting, running = list(range(count)), {}
        try:
            while waiting or running:
                while waiting and len(running) < workers:
                    k = waiting.pop(0)
                    running[k] = subprocess.Popen([sys.executable, "-m", "rnnonnx.training", str(work), str(k)])
                for k, proc in list(running.items()):
                    if proc.poll() is not None:
                        del running[k]
                        if proc.returncode != 0:
                            raise RnnonnxError(f"training member {k + 1} of {count} failed (worker exit status {proc.returncode})")
                time.sleep(0.05)
        finally:
            for proc in running.values():  # an error or Ctrl-C: stop the other members now
                proc.kill()
                proc.wait()
        return [_read_member(work, k) for k in range(count)]


def _read_member(work: Path, member: int) -> MemberFit:
    from safetensors.torch import load_file

    record = json.loads((work / f"member{member}.json").read_text(encoding="utf-8"))
    return MemberFit(record["seed"], load_file(str(work / f"member{member}.safetensors")), record["history"], record["best_epoch"])


def _exit_with_parent() -> None:
    """Stop this worker as soon as its parent is gone (killed before it could stop its workers)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _member_worker(work: Path, member: int) -> None:
    """A worker process: fit one member from the files ``_fit_members`` wrote, write it back."""
    from safetensors.torch import load_file, save_file

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent()
    job = json.loads((work / "job.json").read_text(encoding="utf-8"))
    data = load_file(str(work / "data.safetensors"))
    fit = fit_member(ModelConfig(**job["model"]), TrainConfig(**job["training"]), member, (data["train_ids"], data["train_y"]),
                     (data["val_ids"], data["val_y"]), torch.device("cpu"), job["progress"], live=False, threads=job["threads"])
    save_file({k: v.contiguous() for k, v in fit.state.items()}, str(work / f"member{member}.safetensors"))
    (work / f"member{member}.json").write_text(json.dumps({"seed": fit.seed, "history": fit.history, "best_epoch": fit.best_epoch}), encoding="utf-8")


def resolve_pooling(pooling: str, ids: torch.Tensor, max_len: int) -> str:
    """``auto``: ``max`` when the median training text is longer than half of ``max_len``, else
    ``last``; any other choice stands. ``ids`` are the encoded texts: truncation at ``max_len``
    does not move a median across ``max_len / 2``, and unknown tokens keep their place."""
    if pooling != "auto":
        return pooling
    lengths = (ids != PAD_ID).sum(dim=1).sort().values
    return "max" if int(lengths[len(lengths) // 2]) > max_len / 2 else "last"


def train(config: TrainConfig, out_dir: str | Path, data: LabelledTexts | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a classifier and write its run directory atomically; returns the metrics record."""
    if config.monitor not in MONITORS:
        raise RnnonnxError(f"unknown monitor {config.monitor!r}; use one of {', '.join(MONITORS)}")
    data = data if data is not None else read_builtin()
    for message in data.warnings:
        warn(message)
    labels = check_classes(data)
    inputs = [data.source] if os.path.isfile(data.source) else []  # the file the texts came from, if any
    check_output_directory(out_dir, is_run_dir, "run", inputs)  # refuse before training, not after it
    seed_everything(config.seed)
    device = resolve_device(config.device)
    parts = split(data.labels, config.validation, config.test, config.seed)
    if parts.validation_is_train:
        warn(f"only {len(data.texts)} rows: too few to hold out validation data, validating on the training rows")

    def pick(indices: list[int]) -> tuple[list[str], list[str]]:
        return [data.texts[i] for i in indices], [data.labels[i] for i in indices]

    train_texts, train_labels = pick(parts.train)
    val_texts, val_labels = pick(parts.validation)
    test_texts, test_labels = pick(parts.test)

    spec = TokenizerSpec(analyzer=config.analyzer, max_len=config.max_len)
    tokenizer = Tokenizer(spec, build_vocab(train_texts, spec, config.min_df, config.max_vocab))
    label_index = {name: i for i, name in enumerate(labels)}

    def tensors(texts: list[str], names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(tokenizer.encode_batch(texts)), torch.tensor([label_index[n] for n in names])

    train_ids, train_y = tensors(train_texts, train_labels)
    val_ids, val_y = tensors(val_texts, val_labels)

    pooling = resolve_pooling(config.pooling, train_ids, config.max_len)
    if progress and pooling != config.pooling:
        print(f"pooling {config.pooling}: {pooling}", file=sys.stderr)
    model_config = ModelConfig(
        vocab_size=len(tokenizer.vocab), num_classes=len(labels), arch=config.arch, embed_dim=config.embed_dim,
        hidden=config.hidden, layers=config.layers, bidirectional=config.bidirectional, dropout=config.dropout,
        pooling=pooling, members=config.members,
    )
    started = time.perf_counter()
    fits = _fit_members(model_config, config, (train_ids, train_y), (val_ids, val_y), device, progress)
    model = build_model(model_config).to(device)
    members = model.members if isinstance(model, Ensemble) else [model]
    for member, fit in zip(members, fits):
        member.load_state_dict(fit.state)
    val_loss, val_acc = evaluate_loss(model, val_ids, val_y, device)
    metrics = {
        "epochs": fits[0].history,
        "best_epoch": fits[0].best_epoch,
        "monitor": config.monitor,
        "val_loss": val_loss,
        "val_accuracy": val_acc,
        "validation_is_train": parts.validation_is_train,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    if len(fits) > 1:
        metrics["members"] = [{"seed": f.seed, "best_epoch": f.best_epoch, "val_accuracy": f.history[f.best_epoch - 1]["val_accuracy"],
                               "val_loss": f.history[f.best_epoch - 1]["val_loss"], "epochs": f.history} for f in fits]
    if test_texts:
        test_ids, test_y = tensors(test_texts, test_labels)
        metrics["test_loss"], metrics["test_accuracy"] = evaluate_loss(model, test_ids, test_y, device)
    if config.baseline:
        from .baseline import baseline_metrics

        if progress:
            print("fitting the TF-IDF + logistic regression baseline on the same split", file=sys.stderr)
        metrics["baseline"] = baseline_metrics((train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels),
                                               spec, config.min_df, config.seed)
    config_record = {
        "format": RUN_FORMAT,
        "rnnonnx_version": __version__,
        "model": model_config.to_dict(),
        "training": asdict(config) | {"device": str(device)},
        "data": {
            "source": data.source,
            "credit": BUILTIN_CREDIT if data.source.startswith("built-in:") else None,
            "rows": len(data.texts), "skipped_empty": data.skipped_empty,
            "train": len(train_texts), "validation": len(val_texts), "test": len(test_texts),
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    _write_run(Path(out_dir), model, tokenizer, labels, config_record, metrics, (val_texts, val_labels), (test_texts, test_labels), inputs)
    return metrics


def _write_run(out_dir: Path, model: TextClassifier | Ensemble, tokenizer: Tokenizer, labels: list[str], config_record: dict,
               metrics: dict, validation: tuple[list[str], list[str]], test: tuple[list[str], list[str]], inputs: list[str]) -> None:
    from safetensors.torch import save_file

    from .bundle import write_json

    with atomic_directory(out_dir, replaces=is_run_dir, kind="run", inputs=inputs) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        write_json(tmp / "config.json", config_record)
        write_json(tmp / "tokenizer.json", tokenizer.to_dict())
        write_json(tmp / "labels.json", labels)
        write_json(tmp / "metrics.json", metrics)
        write_jsonl(tmp / "validation.jsonl", *validation)
        write_jsonl(tmp / "test.jsonl", *test)


class _progress:
    """A one-line progress bar on stderr with a live status (loss, accuracy); silent when off."""

    def __init__(self, total: int, label: str, enabled: bool, live: bool = True) -> None:
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self.tty = enabled and live and sys.stderr.isatty()
        self.started = time.perf_counter()

    def update(self, n: int, status: str) -> None:
        self.done += n
        if self.tty:
            width = 24
            filled = int(width * self.done / max(1, self.total))
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {status}  ")
            sys.stderr.flush()

    def finish(self, status: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.started
            sys.stderr.write(("\r" if self.tty else "") + f"{self.label} [{self.done}/{self.total}] {elapsed:.1f}s {status}\n")
            sys.stderr.flush()


if __name__ == "__main__":
    _member_worker(Path(sys.argv[1]), int(sys.argv[2]))

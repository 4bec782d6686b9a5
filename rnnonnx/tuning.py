"""``--autotune DURATION``: a hyper-parameter search on the validation split within a time budget.

Like fastText's ``-autotune-duration``: Optuna's TPE sampler (seeded by ``--seed``) proposes
architectures, sizes, dropout, learning rate, batch size, max length, pooling and ensemble size;
each trial is fitted on the training rows with the usual early stopping and scored by its
validation accuracy. Bad trials are pruned (Optuna's median rule on each epoch's validation
accuracy), and the budget is hard: no trial starts after it, and the one running when it ends
stops after its current batch. The first trial is the recipe as configured, so the search can
only replace it with something that scores better on validation.

The kept model is the best trial's own weights (no retraining); the caller then calibrates and
refits it as usual (``--refit``), after the budget. The test rows are never seen here.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from .config import TrainConfig
from .errors import RnnonnxError
from .fitting import FitJob, MemberFit, OutOfTime, evaluate_loss, fit_member
from .model import Ensemble, build_model
from .text import PAD_ID, Tokenizer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .training import SplitRows
    from .vectors import WordVectors

TUNE_HINT = 'the --autotune search needs Optuna: pip install "rnnonnx[tune]"'
# What the search chooses, unless the user set it: the rest (epochs, patience, vocabulary) is the
# budget and the input of every trial, the same for all.
SEARCHED = (
    "arch",
    "embed_dim",
    "hidden",
    "layers",
    "bidirectional",
    "dropout",
    "lr",
    "batch_size",
    "max_len",
    "pooling",
    "members",
)
WIDTHS = (32, 64, 128, 256)
BATCH_SIZES = (16, 32, 64, 128)
LR_RANGE = (3e-4, 1e-2)
MAX_DROPOUT = 0.5
MAX_MEMBERS = 3
# max_len choices: powers of two from 16 up to the one covering 95% of the training texts, at most
# 1024 (longer recurrences cost more than a budget of minutes can afford), plus the configured one.
MIN_LEN, MAX_LEN = 16, 1024
# Random trials before TPE models the results: the search often has only tens of trials.
STARTUP_TRIALS = 5


@dataclass
class Tuned:
    """The search's outcome: the chosen config (every searched option set), its tokenizer (the
    chosen ``max_len``), the best trial's fitted members, and the record for ``metrics.json``."""

    config: TrainConfig
    tokenizer: Tokenizer
    fits: list[MemberFit]
    record: dict[str, Any]


def import_optuna() -> Any:
    """Optuna, or one line naming the extra that installs it."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise RnnonnxError(TUNE_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the trials are reported here, one line each
    return optuna


def length_choices(lengths: torch.Tensor, configured: int) -> list[int]:
    """The ``max_len`` values to try, from the training texts' token counts (``lengths``)."""
    covered = int(torch.quantile(lengths.double(), 0.95)) if len(lengths) else MIN_LEN
    top = min(MAX_LEN, 1 << max(0, math.ceil(math.log2(max(covered, MIN_LEN)))))
    choices = {MIN_LEN << k for k in range(int(math.log2(top // MIN_LEN)) + 1)}
    return sorted(choices | {configured})


def suggest(trial: Any, name: str, config: TrainConfig, lengths: list[int]) -> Any:
    """One searched option's value for ``trial``; every range holds ``config``'s own value, the
    first trial's."""
    own = getattr(config, name)
    if name == "arch":
        return trial.suggest_categorical(name, ["lstm", "gru", "rnn"])
    if name in ("embed_dim", "hidden"):
        return trial.suggest_categorical(name, sorted({*WIDTHS, own}))
    if name == "layers":
        return trial.suggest_int(name, 1, max(2, own))
    if name == "bidirectional":
        return trial.suggest_categorical(name, [False, True])
    if name == "dropout":
        return trial.suggest_float(name, 0.0, max(MAX_DROPOUT, own))
    if name == "lr":
        return trial.suggest_float(name, min(LR_RANGE[0], own), max(LR_RANGE[1], own), log=True)
    if name == "batch_size":
        return trial.suggest_categorical(name, sorted({*BATCH_SIZES, own}))
    if name == "max_len":
        return trial.suggest_categorical(name, lengths)
    if name == "pooling":
        return trial.suggest_categorical(name, ["last", "max", "concat"])
    if name == "members":
        return trial.suggest_int(name, 1, max(MAX_MEMBERS, own))
    raise ValueError(f"not a searched option: {name}")


def autotune(
    config: TrainConfig,
    rows: "SplitRows",
    tokenizer: Tokenizer,
    labels: list[str],
    vectors: "WordVectors | None",
    device: torch.device,
    fixed: "Iterable[str]" = (),
    progress: bool = True,
    max_trials: int | None = None,
) -> Tuned:
    """Search the options of :data:`SEARCHED` that are not in ``fixed`` for ``config.autotune``
    seconds (or ``max_trials`` trials, whichever ends first) and return the best trial."""
    from .training import resolve_batch, resolve_pooling, vector_tensors

    optuna = import_optuna()
    config = resolve_batch(config, len(rows.train[0]))  # a run has resolved it already; a direct call may not
    started = time.monotonic()
    deadline = started + float(config.autotune or 0)
    kept = {name for name in fixed if name in SEARCHED} | ({"embed_dim"} if vectors is not None else set())
    searched = [name for name in SEARCHED if name not in kept]
    label_index = {name: i for i, name in enumerate(labels)}
    train_y = torch.tensor([label_index[n] for n in rows.train[1]])
    val_y = torch.tensor([label_index[n] for n in rows.validation[1]])
    weights = config.class_weights(labels, torch.bincount(train_y, minlength=len(labels)).tolist())
    encoded: dict[int, tuple[Tokenizer, torch.Tensor, torch.Tensor]] = {}

    def encode(max_len: int) -> tuple[Tokenizer, torch.Tensor, torch.Tensor]:
        if max_len not in encoded:
            tok = Tokenizer(replace(tokenizer.spec, max_len=max_len), tokenizer.vocab)
            encoded[max_len] = (
                tok,
                torch.from_numpy(tok.encode_batch(rows.train[0])),
                torch.from_numpy(tok.encode_batch(rows.validation[0])),
            )
        return encoded[max_len]

    full = Tokenizer(replace(tokenizer.spec, max_len=MAX_LEN), tokenizer.vocab)
    lengths = length_choices((torch.from_numpy(full.encode_batch(rows.train[0])) != PAD_ID).sum(dim=1), config.max_len)
    if progress:
        print(
            f"autotune: searching {', '.join(searched) or 'nothing'} for {_duration(config.autotune or 0)} on the validation rows"
            + (f"; keeping {', '.join(f'{n}={getattr(config, n)}' for n in SEARCHED if n in kept)} as set" if kept else ""),
            file=sys.stderr,
        )
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=STARTUP_TRIALS),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    first = {name: getattr(config, name) for name in searched}
    if "pooling" in first and first["pooling"] == "auto":
        first["pooling"] = resolve_pooling("auto", encode(config.max_len)[1], config.max_len)
    study.enqueue_trial(first)
    best: dict[str, Any] = {"value": -math.inf}
    trials: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        trial_started = time.monotonic()
        params = {name: suggest(trial, name, config, lengths) for name in searched}
        chosen = replace(config, **params)
        tok, train_ids, val_ids = encode(chosen.max_len)
        chosen = replace(chosen, pooling=resolve_pooling(chosen.pooling, train_ids, chosen.max_len))
        model_config = chosen.model_config(len(tok.vocab), len(labels), chosen.pooling)
        entry: dict[str, Any] = {"number": trial.number, "params": params}
        trials.append(entry)

        def on_epoch(member: int, row: dict[str, float]) -> None:
            if member == 0:
                entry.setdefault("curve", []).append(row["val_accuracy"])
                trial.report(row["val_accuracy"], int(row["epoch"]))
                if trial.should_prune():
                    entry["epochs"] = int(row["epoch"])
                    raise optuna.TrialPruned()

        job = FitJob(
            model_config, chosen, train_ids, train_y, val_ids, val_y, False, weights, *vector_tensors(vectors),
            on_epoch=on_epoch, deadline=deadline,
        )  # fmt: skip

        def score(chosen: TrainConfig, fits: list[MemberFit]) -> float:
            model = build_model(chosen.model_config(len(tok.vocab), len(labels), chosen.pooling)).to(device)
            for member, fit in zip(model.members if isinstance(model, Ensemble) else [model], fits):
                member.load_state_dict(fit.state)
            return evaluate_loss(model, val_ids, val_y, device, class_weights=weights)[1]

        fits: list[MemberFit] = []
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # each member's "early stop" line
                for k in range(chosen.members):
                    fits.append(fit_member(job, k, device, live=False))
        except OutOfTime as exc:
            # The budget ended inside this trial: its finished members, and the running one at its
            # best epoch so far, are still a model trained within the budget; it competes as one.
            fits += [exc.partial] if exc.partial is not None else []
            entry |= {
                "state": "stopped",
                "members_done": len(fits),
                "epochs": [fit.best_epoch for fit in fits],
                "seconds": round(time.monotonic() - trial_started, 2),
            }
            if fits:
                partial = replace(chosen, members=len(fits))
                value = score(partial, fits)
                entry["val_accuracy"] = value
                if value > best["value"]:
                    best.update(value=value, config=partial, tokenizer=tok, fits=fits, trial=trial.number, partial=True)
            _show(progress, entry)
            study.stop()
            raise optuna.TrialPruned() from None
        except optuna.TrialPruned:
            entry |= {"state": "pruned", "seconds": round(time.monotonic() - trial_started, 2)}
            _show(progress, entry)
            raise
        except RnnonnxError as exc:  # a diverged trial (too high a learning rate): recorded, not fatal
            entry |= {"state": "failed", "error": str(exc), "seconds": round(time.monotonic() - trial_started, 2)}
            _show(progress, entry)
            raise
        val_acc = score(chosen, fits)
        entry |= {
            "state": "complete",
            "val_accuracy": val_acc,
            "epochs": [fit.best_epoch for fit in fits],
            "seconds": round(time.monotonic() - trial_started, 2),
        }
        _show(progress, entry)
        if val_acc > best["value"]:  # ties keep the earlier trial: the configured recipe first
            best.update(value=val_acc, config=chosen, tokenizer=tok, fits=fits, trial=trial.number, partial=False)
        return val_acc

    remaining = deadline - time.monotonic()
    threads = torch.get_num_threads()
    # Trials run in this process on one thread, as the ensemble's worker processes do: small
    # recurrent layers gain little from a second intra-op thread, and on shared cores its
    # spin-waiting made 20 training steps 12-17x slower (benchmarks/autotune.md).
    torch.set_num_threads(1)
    try:
        if remaining > 0:
            study.optimize(objective, n_trials=max_trials, timeout=remaining, catch=(RnnonnxError,))
    finally:
        torch.set_num_threads(threads)
    if "fits" not in best:
        raise RnnonnxError(
            f"--autotune {_duration(config.autotune or 0)}: the time ran out before a trial finished one epoch; "
            "give it longer (a trial costs about a plain 'rnnonnx train')"
        )
    record = {
        "budget_seconds": config.autotune,
        "seconds": round(time.monotonic() - started, 2),
        "trials": len(trials),
        "complete": sum(t["state"] == "complete" for t in trials),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "failed": sum(t["state"] == "failed" for t in trials),
        "stopped_by_budget": sum(t["state"] == "stopped" for t in trials),
        "best_trial": best["trial"],
        "best_val_accuracy": best["value"],
        # the best trial was cut by the budget: its members so far, each at its best epoch
        "best_stopped_by_budget": best["partial"],
        "best_params": {name: getattr(best["config"], name) for name in searched},
        "kept": {name: getattr(config, name) for name in SEARCHED if name in kept},
        "sampler": f"TPE (seed {config.seed}), median pruning",
        "history": trials,
    }
    return Tuned(best["config"], best["tokenizer"], best["fits"], record)


def summary(record: dict[str, Any]) -> str:
    """What the search chose, as the command-line options that reproduce it without searching."""
    flags = " ".join(_flag(name, value) for name, value in record["best_params"].items())
    if record["kept"]:
        flags += " (kept as set: " + " ".join(_flag(name, value) for name, value in record["kept"].items()) + ")"
    return (
        f"autotune: {record['trials']} trial(s) in {record['seconds']:.0f}s ({record['complete']} complete, "
        f"{record['pruned']} pruned, {record['failed']} failed, {record['stopped_by_budget']} stopped by the budget); "
        f"best validation accuracy {record['best_val_accuracy']:.4f} (trial {record['best_trial']}): {flags or 'as configured'}"
    )


def _flag(name: str, value: Any) -> str:
    if name == "bidirectional":
        return "--bidirectional" if value else "--unidirectional"
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    return f"--{name.replace('_', '-')} {shown}"


def _show(progress: bool, entry: dict[str, Any]) -> None:
    if not progress:
        return
    params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry["params"].items())
    result = f"val_accuracy {entry['val_accuracy']:.4f}" if entry["state"] == "complete" else entry["state"]
    if entry["state"] == "pruned" and "epochs" in entry:
        result += f" at epoch {entry['epochs']}"
    if entry["state"] == "stopped":
        done = entry["members_done"]
        result += f" by the budget, {done} member(s) kept" + (f": val_accuracy {entry['val_accuracy']:.4f}" if done else "")
    print(f"autotune trial {entry['number']}: {result} ({entry['seconds']:.1f}s) {params}", file=sys.stderr)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"

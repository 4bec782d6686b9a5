"""The one reader and writer of run directories: what training leaves behind and export reads.

Layout: ``config.json`` (format, model and training options, data summary, versions),
``model.safetensors`` (no pickle), ``tokenizer.json``, ``labels.json``, ``metrics.json`` (per
epoch) and ``validation.jsonl`` / ``test.jsonl`` (the held-out rows, in the JSON Lines form that
``--data`` reads). A run's bundle goes to ``RUN/bundle`` unless ``export --out`` says otherwise.

Everything but :func:`load_run` works without torch, so the predictor side can read a run's
metrics and held-out rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import RnnonnxError
from .files import atomic_directory, write_json
from .text import Tokenizer

RUN_FORMAT = "rnnonnx-run/1"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
LABELS = "labels.json"
METRICS = "metrics.json"
HELD_OUT = {"validation": "validation.jsonl", "test": "test.jsonl"}
BUNDLE_DIR = "bundle"


@dataclass
class MemberRecord:
    """One ensemble member's seed, kept epoch, its validation scores there, and its history."""

    seed: int
    best_epoch: int
    val_accuracy: float
    val_loss: float
    epochs: list[dict[str, float]]


@dataclass
class Metrics:
    """``metrics.json``: the per-epoch history, the kept epoch and the scores of the trained model.

    ``epochs`` and ``best_epoch`` are the first member's; ``members`` lists every member of an
    ensemble (empty for one classifier). ``test_*`` are ``None`` when no test rows were held out,
    ``baseline`` when ``--baseline`` was not asked for. ``calibration`` (see
    :func:`rnnonnx.calibration.record`) holds the fitted temperature and the NLL/ECE/Brier before
    and after it; ``None`` when the run was not calibrated.
    """

    epochs: list[dict[str, float]]
    best_epoch: int
    monitor: str
    val_loss: float
    val_accuracy: float
    validation_is_train: bool
    train_seconds: float
    members: list[MemberRecord] = field(default_factory=list)
    test_loss: float | None = None
    test_accuracy: float | None = None
    baseline: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    # A multi-label run's tuned thresholds and its scores with them on validation and test
    # (see rnnonnx.multilabel.scores); its *_accuracy figures are subset accuracy at 0.5.
    multilabel: dict[str, Any] | None = None
    # --refit: the rows, each member's epochs and the seconds of the refit (validation scores are
    # then the early-stopped model's, test scores the refitted one's); --vectors: the file and its
    # coverage of the vocabulary; --autotune: the search (trials, best parameters and score).
    refit: dict[str, Any] | None = None
    vectors: dict[str, Any] | None = None
    autotune: dict[str, Any] | None = None
    # The linear member (rnnonnx/linear.py): its chosen share, its validation accuracy alone and the
    # blend's at every share tried, the tokens it reads; absent when the run has none.
    linear: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; optional parts appear only when they exist."""
        record = asdict(self)
        for key in (
            "test_loss",
            "test_accuracy",
            "baseline",
            "calibration",
            "multilabel",
            "refit",
            "vectors",
            "autotune",
            "linear",
        ):
            if record[key] is None:
                del record[key]
        if not self.members:
            del record["members"]
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Metrics":
        """Read back :meth:`to_dict`'s form (raises ``KeyError``/``TypeError`` on a foreign one)."""
        values = dict(data)
        values["members"] = [MemberRecord(**m) for m in values.get("members") or []]
        return cls(**values)

    def summary(self) -> str:
        """One line: the kept epoch or the ensemble, validation and test accuracy."""
        text = f"ensemble of {len(self.members)}" if self.members else f"best epoch {self.best_epoch}"
        text += f": val_accuracy {self.val_accuracy:.4f}"
        if self.test_accuracy is not None:
            text += f", test_accuracy {self.test_accuracy:.4f}"
        if self.refit is not None:
            text += f" (refit on {self.refit['rows']} rows)"
        if self.calibration is not None:
            text += f", temperature {self.calibration['temperature']:.3f}"
        if self.multilabel is not None:
            part = "test" if "test" in self.multilabel else "validation"
            text += f", {part} micro-F1 {self.multilabel[part]['micro_f1']:.4f} macro-F1 {self.multilabel[part]['macro_f1']:.4f}"
        if self.members:
            text += (
                " (members: " + ", ".join(f"epoch {m.best_epoch} val_accuracy {m.val_accuracy:.4f}" for m in self.members) + ")"
            )
        return text


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory rnnonnx wrote (its config.json says so, any run format
    version): the only kind of directory ``train --out`` may replace. Never raises."""
    from .files import read_json_marker

    config = read_json_marker(Path(path) / CONFIG)
    return isinstance(config, dict) and str(config.get("format")).startswith("rnnonnx-run/")


def write_run(
    out_dir: str | Path,
    state: Mapping[str, Any],
    config: Mapping[str, Any],
    tokenizer: Tokenizer,
    labels: list[str],
    metrics: Metrics,
    validation: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write a complete run directory atomically; ``state`` is the model's state dict (tensors).
    Only a run (or an empty directory) at ``out_dir`` is replaced, never one holding ``inputs``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with atomic_directory(out_dir, replaces=is_run_dir, kind="run", inputs=inputs) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / WEIGHTS))
        write_json(tmp / CONFIG, {"format": RUN_FORMAT, **config})
        write_json(tmp / TOKENIZER, tokenizer.to_dict())
        write_json(tmp / LABELS, labels)
        write_json(tmp / METRICS, metrics.to_dict())
        for part, rows in (("validation", validation), ("test", test)):
            _write_jsonl(tmp / HELD_OUT[part], *rows)
    return out_dir


def _write_jsonl(path: Path, texts: Iterable[str], labels: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels):
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnonnxError(f"{path}: missing; expected a run directory written by 'rnnonnx train'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RnnonnxError(f"{path}: cannot read it ({type(exc).__name__})") from None


def read_metrics(run_dir: str | Path) -> Metrics:
    """A run's ``metrics.json`` (per-epoch history, kept epoch, baseline if fitted)."""
    path = Path(run_dir) / METRICS
    try:
        metrics = Metrics.from_dict(_read_json(path))
    except (KeyError, TypeError, AttributeError) as exc:
        raise RnnonnxError(f"{path}: not a metrics record ({type(exc).__name__}: {exc})") from None
    if not metrics.epochs:
        raise RnnonnxError(f"{path}: no per-epoch history")
    return metrics


def read_held_out(run_dir: str | Path, part: str) -> tuple[list[str], list[str]]:
    """The ``validation`` or ``test`` rows a run kept aside, as ``(texts, labels)``; empty when
    it kept none (too little data, or ``--test 0``)."""
    from .data import read_file

    path = Path(run_dir) / HELD_OUT[part]
    if not path.is_file() or not path.read_bytes().strip():
        return [], []
    rows = read_file(path, "jsonl")
    return rows.texts, rows.label_sets if rows.label_sets is not None else rows.labels


def find_bundle(target: str | Path) -> tuple[Path, Path | None]:
    """``(bundle, run_dir)`` for a bundle, or for a run directory (whose bundle is ``RUN/bundle``)."""
    from .bundle import MANIFEST

    path = Path(target)
    if (path / MANIFEST).is_symlink() or (path / MANIFEST).exists():  # whatever it is: Bundle says what is wrong with it
        return path, None
    if is_run_dir(path):
        if not (path / BUNDLE_DIR / MANIFEST).is_file():
            raise RnnonnxError(f"{path}: the run has no bundle yet; run 'rnnonnx export {path}' first")
        return path / BUNDLE_DIR, path
    if not path.is_dir():
        raise RnnonnxError(f"{path}: no such directory (expected a bundle or a run directory)")
    raise RnnonnxError(f"{path}: neither a bundle (no manifest.json) nor a run directory (no config.json)")


def parent_run(bundle: str | Path) -> Path | None:
    """The run a bundle sits in (``export``'s default layout ``RUN/bundle``), if any."""
    parent = Path(bundle).resolve().parent
    return parent if is_run_dir(parent) else None


@dataclass
class Run:
    """A trained run loaded back: the torch model (eval mode), tokenizer, labels and records."""

    path: Path
    config: dict[str, Any]
    model: Any
    tokenizer: Tokenizer
    labels: list[str]
    metrics: Metrics

    @property
    def refitted(self) -> bool:
        """Whether ``--refit`` trained the model on its validation rows too (scores on them then
        compare models, but no longer predict accuracy on new texts)."""
        return self.metrics is not None and self.metrics.refit is not None

    def held_out(self, part: str) -> tuple[list[str], list[str]]:
        """The ``validation`` or ``test`` rows kept aside at training time."""
        return read_held_out(self.path, part)


def _place_bigrams(model: Any, config: dict[str, Any]) -> None:
    """Lay out the linear member's bigram index with this version's hash when the run was saved
    with an earlier one (:meth:`rnnonnx.linear.LinearMember.placed`: same logits), in the model and
    in the config the run carries into its bundle."""
    linear = getattr(model, "linear", None)
    placed = linear.placed() if linear is not None else None
    if placed is None or placed is linear:
        return
    model.linear = placed
    sizes = {"linear_buckets": placed.buckets, "linear_groups": placed.groups}
    model.config = replace(model.config, **sizes)
    config["model"] = {**config["model"], **sizes}


def load_run(path: str | Path) -> Run:
    """Load a run directory with safe deserialization only (safetensors, JSON)."""
    from safetensors.torch import load_file

    from .config import ModelConfig
    from .model import build_model

    path = Path(path)
    if not (path / CONFIG).is_file():
        raise RnnonnxError(f"{path}: not a run directory (no {CONFIG}); train one with 'rnnonnx train --out DIR'")
    config = _read_json(path / CONFIG)
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise RnnonnxError(f"{path}: unknown run format {config.get('format') if isinstance(config, dict) else None!r}")
    try:
        tokenizer = Tokenizer.from_dict(_read_json(path / TOKENIZER))
        labels = _read_json(path / LABELS)
        metrics = read_metrics(path)
        model = build_model(ModelConfig(**config["model"]))
        model.load_state_dict(load_file(str(path / WEIGHTS)))
        _place_bigrams(model, config)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise RnnonnxError(f"{path}: cannot load run ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    model.eval()
    return Run(path, config, model, tokenizer, labels, metrics)

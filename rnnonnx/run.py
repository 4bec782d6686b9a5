"""The run directory: what training leaves behind and export reads.

Layout: ``config.json``, ``model.safetensors`` (no pickle), ``tokenizer.json``, ``labels.json``,
``metrics.json`` (per epoch), ``validation.jsonl`` and ``test.jsonl`` (the held-out rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RnnonnxError
from .text import Tokenizer

RUN_FORMAT = "rnnonnx-run/1"
WEIGHTS = "model.safetensors"


def write_jsonl(path: Path, texts: list[str], labels: list[str]) -> None:
    """Held-out rows in the same JSON Lines form that ``--data`` reads."""
    with open(path, "w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels):
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    """Read back rows written by :func:`write_jsonl`."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(record["text"])
            labels.append(record["label"])
    return texts, labels


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory rnnonnx wrote (its config.json says so, any run format
    version): the only kind of directory ``train --out`` may replace. Never raises."""
    from .files import read_json_marker

    config = read_json_marker(Path(path) / "config.json")
    return isinstance(config, dict) and str(config.get("format")).startswith("rnnonnx-run/")


@dataclass
class Run:
    """A trained run loaded back: the torch model (eval mode), tokenizer, labels and records."""

    path: Path
    config: dict[str, Any]
    model: Any
    tokenizer: Tokenizer
    labels: list[str]
    metrics: dict[str, Any]

    def held_out(self, part: str) -> tuple[list[str], list[str]]:
        """The ``validation`` or ``test`` rows kept aside at training time."""
        path = self.path / f"{part}.jsonl"
        return read_jsonl(path) if path.is_file() else ([], [])


def load_run(path: str | Path) -> Run:
    """Load a run directory with safe deserialization only (safetensors, JSON)."""
    from safetensors.torch import load_file

    from .model import ModelConfig, build_model

    path = Path(path)
    if not (path / "config.json").is_file():
        raise RnnonnxError(f"{path}: not a run directory (no config.json); train one with 'rnnonnx train --out DIR'")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if config.get("format") != RUN_FORMAT:
            raise RnnonnxError(f"{path}: unknown run format {config.get('format')!r}")
        tokenizer = Tokenizer.from_dict(json.loads((path / "tokenizer.json").read_text(encoding="utf-8")))
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        model = build_model(ModelConfig(**config["model"]))
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise RnnonnxError(f"{path}: cannot load run ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    model.eval()
    return Run(path, config, model, tokenizer, labels, metrics)

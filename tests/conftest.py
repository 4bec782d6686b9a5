"""Shared fixtures: a tiny model trained once per session, and its bundle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def small_sample(n: int = 400):
    """``n`` built-in sentences, classes alternating (the file lists all ``pos`` rows first), so
    any prefix of the sample is balanced too."""
    from rnnonnx.data import LabelledTexts, read_builtin

    data = read_builtin()
    by_label = [[j for j, y in enumerate(data.labels) if y == label][: n // 2] for label in ("neg", "pos")]
    rows = [i for pair in zip(*by_label) for i in pair]
    return LabelledTexts([data.texts[i] for i in rows], [data.labels[i] for i in rows], "built-in sample")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A one-epoch LSTM run (an ensemble of 3) on 400 built-in sentences."""
    from rnnonnx.config import TrainConfig
    from rnnonnx.training import train_run as train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    # No refit: tests compare what the bundle scores on the validation rows with the run's record,
    # which are the early-stopped model's (a refitted model has learned those rows).
    config = TrainConfig(arch="lstm", embed_dim=16, hidden=16, epochs=1, max_len=24, seed=1, refit=False)
    train(config, out, small_sample(), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """The bundle exported from ``tiny_run``."""
    from rnnonnx.exporting import export_run

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_run(tiny_run, out, log=lambda message: None)
    return out


def run_cli(
    *args: str, input: str | None = None, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``rnnonnx`` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "rnnonnx.cli", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )

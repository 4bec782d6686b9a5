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
    """A one-epoch LSTM run (an ensemble of 3, with a small bag-of-n-grams branch, so the text
    graph, int8 and verify tests cover it too) on 400 built-in sentences."""
    from rnnonnx.config import TrainConfig
    from rnnonnx.training import train_run as train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    # No refit: tests compare what the bundle scores on the validation rows with the run's record,
    # which are the early-stopped model's (a refitted model has learned those rows).
    config = TrainConfig(arch="lstm", embed_dim=16, hidden=16, epochs=1, max_len=24, seed=1, refit=False, ngram_buckets=256)
    train(config, out, small_sample(), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """The bundle exported from ``tiny_run``."""
    from rnnonnx.exporting import export_run

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_run(tiny_run, out, log=lambda message: None)
    return out


@pytest.fixture(scope="session")
def tiny_int8_bundle(tiny_run, tmp_path_factory) -> Path:
    """``tiny_run`` exported with its int8 twins (four model files); tests only read it."""
    from rnnonnx.exporting import export_run

    out = tmp_path_factory.mktemp("bundles") / "tiny-int8"
    export_run(tiny_run, out, log=lambda message: None, quantize="int8")
    return out


def load_script(name: str, filename: str):
    """A script of ``benchmarks/`` imported as the module ``name``, for tests of its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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


TOPICS = {
    "audio": ["sound", "music", "audio", "volume", "mixer"],
    "graphics": ["image", "photo", "picture", "pixel", "draw"],
    "network": ["network", "socket", "http", "server", "download"],
    "text": ["editor", "text", "document", "spelling", "font"],
}
FILLER = ["tool", "simple", "library", "program", "small", "fast", "the", "for", "with", "and"]


def multilabel_rows(n: int = 240, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n`` synthetic texts with 0 to 3 of four topic labels each: every label's words mark it,
    filler words do not; a fixed seed, so every test sees the same rows."""
    import random

    rng = random.Random(seed)
    names = sorted(TOPICS)
    rows = []
    for i in range(n):
        labels = sorted(rng.sample(names, [0, 1, 1, 2, 2, 3][i % 6]))
        words = [w for name in labels for w in rng.sample(TOPICS[name], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append((" ".join(words), labels))
    return rows


@pytest.fixture(scope="session")
def tiny_multilabel_run(tmp_path_factory) -> Path:
    """A few-epoch multi-label GRU ensemble of two members on :func:`multilabel_rows`."""
    from rnnonnx.config import TrainConfig
    from rnnonnx.data import LabelledTexts
    from rnnonnx.training import train_run as train

    rows = multilabel_rows()
    data = LabelledTexts([t for t, _ in rows], [], "synthetic topics", label_sets=[labels for _, labels in rows])
    out = tmp_path_factory.mktemp("runs") / "multilabel"
    config = TrainConfig(
        arch="gru", embed_dim=16, hidden=16, epochs=12, patience=12, max_len=16, min_df=1, members=2, lr=2e-2, seed=1
    )
    train(config, out, data, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_multilabel_bundle(tiny_multilabel_run, tmp_path_factory) -> Path:
    """The bundle exported from ``tiny_multilabel_run``."""
    from rnnonnx.exporting import export_run

    out = tmp_path_factory.mktemp("bundles") / "multilabel"
    export_run(tiny_multilabel_run, out, log=lambda message: None)
    return out


def member_job(config, n: int = 120):
    """A two-member fit job on random ids: 120 rows of 10 ids (a third cut to 6 tokens), 2 classes."""
    import torch

    from rnnonnx.config import ModelConfig
    from rnnonnx.fitting import FitJob

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 30, (n, 10), generator=generator)
    ids[::3, 6:] = 0
    model = ModelConfig(
        vocab_size=30, num_classes=2, arch="lstm", embed_dim=8, hidden=8, layers=1, bidirectional=False, dropout=0.3, members=2
    )
    return FitJob(
        model,
        config,
        ids,
        torch.randint(0, 2, (n,), generator=generator),
        ids[:30],
        torch.randint(0, 2, (30,), generator=generator),
        progress=False,
    )


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (read from /proc, Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (read from /proc, Linux); none once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return []


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and those they started."""
    return [found for child in children(pid) for found in [child, *descendants(child)]]

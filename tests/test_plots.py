"""`rnnonnx evaluate --plot`: PNG figures, and a clear error when matplotlib is missing."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnonnx.errors import RnnonnxError
from rnnonnx.evaluation import evaluate, evaluate_predictions
from rnnonnx.plots import CONFUSION_PNG, COVERAGE_PNG, CURVES_PNG, RELIABILITY_PNG, plot_curves, write_plots
from rnnonnx.run import Metrics
from tests.conftest import run_cli

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature and header chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def assert_real_png(path) -> None:
    width, height = png_size(path)
    assert width >= 300 and height >= 300
    assert path.stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_bundle_with_its_run_gives_confusion_matrix_and_curves(tiny_run, tiny_bundle, tmp_path):
    result = evaluate(tiny_bundle, run_dir=tiny_run, plot_dir=tmp_path / "plots", device="cpu", min_score=0.6)
    names = [CONFUSION_PNG, RELIABILITY_PNG, COVERAGE_PNG, CURVES_PNG]
    assert result.plots == [str(tmp_path / "plots" / name) for name in names]
    for path in result.plots:
        assert_real_png(Path(path))
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_bare_bundle_gets_no_training_curves(tiny_run, tiny_bundle, tmp_path):
    from rnnonnx.data import read_file

    result = evaluate(tiny_bundle, read_file(tiny_run / "test.jsonl"), plot_dir=tmp_path, device="cpu")
    names = [CONFUSION_PNG, RELIABILITY_PNG, COVERAGE_PNG]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for name in names:
        assert_real_png(tmp_path / name)
    assert result.plots == [str(tmp_path / name) for name in names]


def test_curves_with_a_baseline_and_many_labels(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_accuracy": 0.5 + e / 100, "val_accuracy": 0.5 + e / 120}
        for e in range(1, 31)
    ]
    common = {"monitor": "val_accuracy", "train_seconds": 1.0, "val_loss": 0.3, "val_accuracy": 0.8, "validation_is_train": False}
    metrics = {
        "epochs": history,
        "best_epoch": 25,
        "validation_is_train": True,
        "baseline": {"model": "tfidf-1-2gram+logreg", "val_loss": 0.2, "val_accuracy": 0.7},
    }
    assert_real_png(plot_curves(Metrics.from_dict(common | metrics), tmp_path / "curves.png"))
    member = {"seed": 0, "val_loss": 0.3, "val_accuracy": 0.8}
    ensemble = {
        "epochs": history,
        "best_epoch": 25,
        "val_loss": 0.3,
        "val_accuracy": 0.8,
        "members": [member | {"epochs": history, "best_epoch": 25}, member | {"epochs": history[:12], "best_epoch": 9}],
    }
    assert_real_png(plot_curves(Metrics.from_dict(common | ensemble), tmp_path / "ensemble.png"))
    labels = [f"label-{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    result = evaluate_predictions("m", "d", labels, [labels[i] for i in rng.integers(0, 12, 200)], rng.random((200, 12)))
    for path in write_plots(tmp_path / "many", result):
        assert_real_png(path)


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    result = evaluate_predictions("m", "d", ["a", "b"], ["a", "b"], np.eye(2))
    with pytest.raises(RnnonnxError, match=r'pip install "rnnonnx\[plot\]"'):
        write_plots(tmp_path, result)
    assert not list(tmp_path.iterdir())


def test_cli_without_matplotlib_says_how_to_install_it(tiny_run, tiny_bundle, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "matplotlib.py").write_text("raise ImportError('matplotlib is hidden for this test')\n")
    result = run_cli(
        "evaluate",
        str(tiny_bundle),
        "--run",
        str(tiny_run),
        "--plot",
        str(tmp_path / "plots"),
        "--device",
        "cpu",
        env={"PYTHONPATH": str(fake)},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == 'Error: plotting needs matplotlib: pip install "rnnonnx[plot]"'


def test_plot_dir_that_is_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = evaluate_predictions("m", "d", ["a", "b"], ["a", "b"], np.eye(2))
    with pytest.raises(RnnonnxError, match="confusion_matrix.png: cannot write"):
        write_plots(blocker, result)
    assert blocker.read_text() == "x"

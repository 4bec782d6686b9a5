"""The run directory: one writer, one reader, a typed metrics record."""

from __future__ import annotations

import json
import shutil

import pytest

from rnnonnx.errors import RnnonnxError
from rnnonnx.run import (
    HELD_OUT,
    METRICS,
    MemberRecord,
    Metrics,
    find_bundle,
    is_run_dir,
    load_run,
    parent_run,
    read_held_out,
    read_metrics,
)


def test_metrics_round_trip_through_json_keeping_the_file_format(tiny_run):
    raw = json.loads((tiny_run / METRICS).read_text())
    metrics = read_metrics(tiny_run)
    assert metrics.to_dict() == raw
    assert isinstance(metrics.members[0], MemberRecord) and len(metrics.members) == 3
    assert metrics.summary().startswith("ensemble of 3: val_accuracy ")


def test_optional_parts_are_left_out_of_the_json():
    single = Metrics(
        epochs=[{"epoch": 1}],
        best_epoch=1,
        monitor="val_loss",
        val_loss=0.5,
        val_accuracy=0.7,
        validation_is_train=True,
        train_seconds=1.0,
    )
    assert set(single.to_dict()) == {
        "epochs",
        "best_epoch",
        "monitor",
        "val_loss",
        "val_accuracy",
        "validation_is_train",
        "train_seconds",
    }
    assert Metrics.from_dict(single.to_dict()) == single and single.summary() == "best epoch 1: val_accuracy 0.7000"


def test_bad_metrics_are_one_line_errors(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / METRICS).write_text(json.dumps({"epochs": []}))
    with pytest.raises(RnnonnxError, match="not a metrics record"):
        read_metrics(copy)
    (copy / METRICS).write_text("[" * 100000)
    with pytest.raises(RnnonnxError, match="cannot read it"):
        read_metrics(copy)


def test_run_detection_and_held_out_rows(tiny_run, tiny_bundle, tmp_path):
    assert is_run_dir(tiny_run) and not is_run_dir(tiny_bundle) and not is_run_dir(tmp_path / "missing")
    (tmp_path / "config.json").write_text('{"format": "something else"}')
    assert not is_run_dir(tmp_path)
    texts, labels = read_held_out(tiny_run, "test")
    assert len(texts) == len(labels) == 40
    assert texts == load_run(tiny_run).held_out("test")[0]
    empty = tmp_path / "empty"
    shutil.copytree(tiny_run, empty)
    (empty / HELD_OUT["test"]).write_text("")
    assert read_held_out(empty, "test") == ([], [])


def test_find_bundle_and_parent_run(tiny_run, tiny_bundle, tmp_path):
    assert find_bundle(tiny_bundle) == (tiny_bundle, None)
    layout = tmp_path / "run"
    shutil.copytree(tiny_run, layout)
    shutil.copytree(tiny_bundle, layout / "bundle")
    assert find_bundle(layout) == (layout / "bundle", layout)
    assert parent_run(layout / "bundle") == layout.resolve() and parent_run(tiny_bundle) is None

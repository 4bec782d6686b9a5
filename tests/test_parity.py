"""The one probability comparison: tolerance, top-label disagreements, ties."""

from __future__ import annotations

import numpy as np
import pytest

from rnnonnx.parity import TIE_MARGIN, ParityReport


def test_identical_batches_pass_and_are_counted():
    report = ParityReport(1e-5)
    expected = np.array([[0.2, 0.8], [0.9, 0.1]])
    report.add(expected, expected.copy())
    report.add(expected[:1], expected[:1] + 1e-6)
    assert report.passed and (report.batches, report.rows) == (2, 3)
    assert report.to_dict() == {
        "tolerance": 1e-5,
        "batches": 2,
        "rows": 3,
        "max_abs_diff": pytest.approx(1e-6, rel=1e-3),
        "label_disagreements": 0,
        "ties_skipped": 0,
        "passed": True,
    }


def test_a_flipped_label_fails_even_within_tolerance_but_a_tie_does_not():
    expected = np.array([[0.5 - 1e-4, 0.5 + 1e-4]])
    flipped = ParityReport(1.0)
    flipped.add(expected, expected[:, ::-1])
    assert not flipped.passed and flipped.label_disagreements == 1
    tie = np.array([[0.5, 0.5 + TIE_MARGIN / 2]])
    tied = ParityReport(1.0)
    tied.add(tie, tie[:, ::-1])
    assert tied.passed and tied.ties_skipped == 1 and tied.label_disagreements == 0


def test_beyond_tolerance_fails_and_given_labels_are_checked():
    report = ParityReport(1e-6)
    expected = np.array([[0.1, 0.9]])
    report.add(expected, expected + np.array([[1e-3, -1e-3]]))
    assert not report.passed and report.max_abs_diff == pytest.approx(1e-3)
    labelled = ParityReport(1.0)
    labelled.add(expected, expected, got_label=np.array([0]))
    assert labelled.label_disagreements == 1


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shape"):
        ParityReport(1.0).add(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="labels of shape"):
        ParityReport(1.0).add(np.zeros((2, 2)), np.zeros((2, 2)), got_label=np.zeros(3))

"""Multi-label helpers: thresholds tuned per label, the split, and the multi-hot targets."""

from __future__ import annotations

import numpy as np
import pytest

from rnnonnx.errors import DataError
from rnnonnx.multilabel import DEFAULT_THRESHOLD, label_names, multi_hot, split_indices, tune_thresholds


def test_thresholds_maximise_each_labels_f1_between_validation_rows():
    proba = np.array(
        [
            [0.9, 0.7, 0.9, 0.3],
            [0.8, 0.7, 0.5, 0.2],
            [0.4, 0.2, 0.4, 0.6],
            [0.3, 0.2, 0.3, 0.1],
            [0.1, 0.2, 0.1, 0.1],
        ]
    )
    truth = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]])
    # label 0: the top 3 rows give F1 4/5, the best; halfway between 0.4 and 0.3
    # label 1: 0.7 twice (one right): cutting inside a tie is impossible, so the top 2 (F1 2/3)
    # label 2: no positive row: the default; label 3: every row positive: at the lowest probability
    assert tune_thresholds(proba, truth) == [np.float32(0.35), np.float32(0.45), DEFAULT_THRESHOLD, np.float32(0.1)]
    assert all(isinstance(t, float) and t == float(np.float32(t)) for t in tune_thresholds(proba, truth))


def test_multi_hot_and_labels():
    targets, unknown = multi_hot([["b", "a"], [], "b", ["zz", "a", "zz"]], ["a", "b"])
    assert targets.tolist() == [[1, 1], [0, 0], [0, 1], [1, 0]] and unknown == {"zz": 2}
    assert label_names([["10", "9"], ["2"]]) == ["2", "9", "10"]
    with pytest.raises(DataError, match="at least two distinct labels"):
        label_names([["a"], ["a"], []])


def test_split_is_seeded_disjoint_and_degrades_on_tiny_data():
    train, validation, test, reused = split_indices(100, 0.1, 0.2, seed=3)
    assert (len(train), len(validation), len(test), reused) == (70, 10, 20, False)
    assert sorted(train + validation + test) == list(range(100))
    assert split_indices(100, 0.1, 0.2, seed=3) == (train, validation, test, reused)
    assert split_indices(100, 0.1, 0.2, seed=4) != (train, validation, test, reused)
    train, validation, test, reused = split_indices(3, 0.1, 0.1, seed=0)
    assert reused and train == validation == [0, 1, 2] and test == []

"""benchmarks/logit_adjustment.py: its macro-F1 is scikit-learn's, and its held-out halves score
the adjustment training applies."""

import numpy as np
import pytest
import torch

from tests.conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("logit_adjustment_script", "logit_adjustment.py")


def test_macro_f1_is_scikit_learns(script):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    targets, predicted = rng.integers(0, 4, 60), rng.integers(0, 3, 60)  # class 3 is never predicted
    expected = f1_score(targets, predicted, average="macro", labels=[0, 1, 2, 3], zero_division=0)
    assert script.macro_f1(torch.from_numpy(predicted), torch.from_numpy(targets), 4) == pytest.approx(expected)


def test_held_out_halves_reward_the_adjustment_where_the_model_under_predicts_a_rare_class(script):
    from rnnonnx.model import prior_shift

    rng = np.random.default_rng(1)
    targets = torch.from_numpy((rng.random(400) < 0.2).astype(np.int64))  # class 1: a fifth of the rows
    lean = torch.where(targets == 1, 0.42, 0.2) + torch.from_numpy(rng.normal(0, 0.05, 400))  # class 1's mass, too low
    probabilities = torch.stack([1 - lean, lean], dim=1).double()
    shifts = {s: torch.tensor(prior_shift([320, 80], s) or [0.0, 0.0], dtype=torch.float64) for s in script.STRENGTHS}
    results = script.held_out(probabilities, probabilities, targets, shifts, halves=3)
    assert results["0"][0] == pytest.approx(0.8, abs=0.02), "without the shift the rare class is never predicted"
    assert results["0.5"][0] > 0.95 and results["0.5"][1] > results["0"][1] + 0.3  # odds of class 1 doubled
    assert results["chosen"][2] > 0.0, "the strength chosen on the other half"

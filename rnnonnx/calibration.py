"""How far a model's probabilities can be taken at their word, and temperature scaling to fix them.

An ensemble of recurrent classifiers trained to the best validation accuracy is usually
over-confident: its 0.95 is right less than 95% of the time. Temperature scaling divides the
logits by one number ``T`` fitted on the validation rows (``T > 1`` softens, ``T < 1`` sharpens);
it never changes which label is on top, so accuracy is untouched, and the exported graph carries
``T`` so every runtime gives the calibrated probabilities.

Numpy only: training fits ``T`` here, and ``rnnonnx evaluate`` (predictor side) scores with the
same functions.

* **ECE** (expected calibration error): the top probability of each row is put in one of
  ``BINS`` = 15 equal-width bins over [0, 1] (bin ``b`` holds ``(b/15, (b+1)/15]``, a score of
  exactly 0 goes to the first); ECE is the row-weighted mean of |accuracy - mean top probability|
  over the bins. 0 is perfect.
* **Brier score**: the squared distance between the probability vector and the one-hot true
  label, summed over labels and averaged over rows (0 best, 2 worst).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

BINS = 15
# The search range of T: wide enough for any model worth shipping, narrow enough that a
# validation set the model gets entirely right (NLL falling forever as T shrinks) stops
# at a finite, visible bound instead of a one-hot model.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_SEARCH_STEPS = 200


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64, stable for any logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    return np.exp(log_softmax(logits))


def nll(logits: np.ndarray, true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under ``softmax(logits / temperature)``."""
    true = np.asarray(true, dtype=np.int64)
    if len(true) == 0:
        return math.nan
    return float(-log_softmax(np.asarray(logits, dtype=np.float64) / temperature)[np.arange(len(true)), true].mean())


def fit_temperature(logits: np.ndarray, true: np.ndarray) -> float:
    """The ``T`` minimising the NLL of ``softmax(logits / T)`` on these rows.

    The NLL is convex in ``1/T``, hence unimodal in ``log T``: a golden-section search over
    ``[MIN_TEMPERATURE, MAX_TEMPERATURE]`` finds its minimum to about 1e-9 (relative), with no
    step size to tune and the same answer on every machine.
    """
    logits = np.asarray(logits, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    if len(true) == 0:
        raise ValueError("no rows to fit a temperature on")
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, true, math.exp(a)), nll(logits, true, math.exp(b))
    for _ in range(_SEARCH_STEPS):
        if high - low < 1e-9:
            break
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, true, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, true, math.exp(b))
    return float(math.exp((low + high) / 2))


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin ``b`` holds ``(b/bins, (b+1)/bins]``; 0 goes to bin 0."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


@dataclass
class Reliability:
    """Per-bin row counts, mean top probability and accuracy (``nan`` for an empty bin)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error over these bins."""
        total = int(self.counts.sum())
        if total == 0:
            return math.nan
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.counts[filled] * gaps).sum() / total)


def reliability(proba: np.ndarray, true: np.ndarray, bins: int = BINS) -> Reliability:
    """The reliability table of ``proba`` (rows of probabilities) against true label indices."""
    proba = np.asarray(proba, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    counts = np.zeros(bins, dtype=np.int64)
    confidence = np.full(bins, math.nan)
    accuracy = np.full(bins, math.nan)
    if len(true):
        top = proba.max(axis=1)
        correct = (proba.argmax(axis=1) == true).astype(np.float64)
        which = _bin_of(top, bins)
        counts = np.bincount(which, minlength=bins)
        filled = counts > 0
        confidence[filled] = np.bincount(which, weights=top, minlength=bins)[filled] / counts[filled]
        accuracy[filled] = np.bincount(which, weights=correct, minlength=bins)[filled] / counts[filled]
    return Reliability(np.linspace(0.0, 1.0, bins + 1), counts, confidence, accuracy)


def ece(proba: np.ndarray, true: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error (see the module docstring)."""
    return reliability(proba, true, bins).ece


def brier(proba: np.ndarray, true: np.ndarray) -> float:
    """Multi-class Brier score: squared error against one-hot, summed over labels, mean over rows."""
    proba = np.asarray(proba, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    if len(true) == 0:
        return math.nan
    target = np.zeros_like(proba)
    target[np.arange(len(true)), true] = 1.0
    return float(((proba - target) ** 2).sum(axis=1).mean())


def scores(logits: np.ndarray, true: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    """NLL, ECE and Brier score of ``softmax(logits / temperature)``: the training record's form."""
    proba = softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return {"nll": nll(logits, true, temperature), "ece": ece(proba, true), "brier": brier(proba, true)}


def record(temperature: float, parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """``metrics.json``'s ``calibration`` entry: ``T``, and for each part (``validation``, ``test``)
    with rows, its NLL/ECE/Brier before and after scaling."""
    out: dict[str, Any] = {"temperature": temperature, "fitted_on": "validation", "ece_bins": BINS}
    for name, (logits, true) in parts.items():
        if len(true):
            out[name] = {"rows": int(len(true)), "before": scores(logits, true), "after": scores(logits, true, temperature)}
    return out

"""The one comparison of two engines' probabilities, and the one shape its report takes.

Export compares ONNX Runtime with PyTorch, and each text-in graph with its ids graph, batch by
batch; the manifest keeps one report per group of batches. Rows whose top two reference
probabilities are within ``TIE_MARGIN`` are ties: either label is right, so they are counted
apart rather than as disagreements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TIE_MARGIN = 1e-6


@dataclass
class ParityReport:
    """Max |difference| of probabilities and top-label disagreements over a group of batches."""

    tolerance: float
    batches: int = 0
    rows: int = 0
    max_abs_diff: float = 0.0
    label_disagreements: int = 0
    ties_skipped: int = 0

    def add(self, expected: np.ndarray, got: np.ndarray, got_label: np.ndarray | None = None) -> None:
        """Compare one batch: ``expected`` and ``got`` are probabilities ``[rows, labels]``;
        ``got_label`` the other engine's top-label indices when it gives them (else its argmax)."""
        expected, got = np.asarray(expected), np.asarray(got)
        if got.shape != expected.shape:
            raise ValueError(f"probabilities of shape {got.shape}, expected {expected.shape}")
        label = got.argmax(axis=1) if got_label is None else np.asarray(got_label)
        if label.shape != (len(expected),):
            raise ValueError(f"labels of shape {label.shape} for {len(expected)} rows")
        top2 = np.sort(expected, axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > TIE_MARGIN
        self.batches += 1
        self.rows += len(expected)
        if len(expected):
            self.max_abs_diff = max(self.max_abs_diff, float(np.abs(expected - got).max()))
        self.label_disagreements += int(((label != expected.argmax(axis=1)) & decided).sum())
        self.ties_skipped += int((~decided).sum())

    @property
    def passed(self) -> bool:
        """Within tolerance everywhere and the same top label wherever it is decided."""
        return self.max_abs_diff <= self.tolerance and self.label_disagreements == 0

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form of one group."""
        return {
            "tolerance": self.tolerance,
            "batches": self.batches,
            "rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "label_disagreements": self.label_disagreements,
            "ties_skipped": self.ties_skipped,
            "passed": self.passed,
        }

    def describe(self, name: str) -> str:
        """One log line."""
        return (
            f"parity {name}: {self.rows} rows in {self.batches} batches, max |dp| {self.max_abs_diff:.2e}, "
            f"label disagreements {self.label_disagreements}"
        )

"""How strongly to lean a model's predictions towards its rarer classes (logit adjustment), judged
on held-out halves of the benchmark suite's validation rows only.

The default recipe blends its members' probabilities p and predicts ``argmax(log p - s * log
prior)``, the prior being each class's share of the training rows and s the strength
(``--logit-adjustment``). For each set this takes the two parts' validation probabilities exactly as
``benchmarks/blend_choice.py`` keeps them (training stops at the choice of the linear member's
share; ``--cache`` shares that script's files), then ``--halves`` times splits the validation rows
into random halves: on one half the linear member's share is chosen as training chooses it (the
most accurate, read through the adjustment) for each fixed strength, and for a strength chosen on
that half too (``chosen``: the most accurate pair); the blend is scored on the other half (and the
other way round), accuracy and macro-F1. The test rows are not read.

    python benchmarks/logit_adjustment.py [--only SET,SET] [--halves 20] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

STRENGTHS = (0.0, 0.1, 0.25, 0.5, 1.0)
CHOSEN = "chosen"


def macro_f1(predicted: Any, targets: Any, classes: int) -> float:
    """Unweighted mean of the per-class F1 (a class neither present nor predicted scores 0, as
    scikit-learn's ``f1_score(average="macro", zero_division=0)`` over every label)."""
    import torch

    pairs = torch.bincount(targets * classes + predicted, minlength=classes * classes).reshape(classes, classes).double()
    hits = pairs.diag()
    denominator = pairs.sum(dim=0) + pairs.sum(dim=1)
    return float(torch.where(denominator > 0, 2 * hits / denominator.clamp_min(1), 0.0).mean())


def predictions(recurrent: Any, linear: Any, weight: float, shift: Any) -> Any:
    blend = (1 - weight) * recurrent + weight * linear
    return (blend.clamp_min(1e-30).log() + shift).argmax(dim=1)


def choose(recurrent: Any, linear: Any, targets: Any, shifts: dict[float, Any]) -> tuple[float, float]:
    """(strength, share): training's rule (the most accurate share, read through the adjustment)
    at each strength given; the most accurate pair across them (ties: the weaker adjustment)."""
    from rnnonnx.linear import choose_weight

    best: tuple[tuple[float, float], float, float] | None = None
    for strength, shift in shifts.items():
        weight, tried = choose_weight(recurrent, linear, targets, tuple(shift.tolist()) if strength else ())
        key = (-tried[f"{weight:g}"], strength)
        if best is None or key < best[0]:
            best = (key, strength, weight)
    assert best is not None
    return best[1], best[2]


def held_out(recurrent: Any, linear: Any, targets: Any, shifts: dict[float, Any], halves: int) -> dict[str, list[float]]:
    """Per rule: mean held-out accuracy, macro-F1 and strength over ``halves`` random splits, both ways."""
    import torch

    classes = recurrent.shape[1]
    rules = {f"{s:g}": {s: shifts[s]} for s in STRENGTHS} | {CHOSEN: shifts}
    scores: dict[str, list[list[float]]] = {rule: [] for rule in rules}
    generator = torch.Generator().manual_seed(0)
    for _ in range(halves):
        order = torch.randperm(len(targets), generator=generator)
        a, b = order[: len(order) // 2], order[len(order) // 2 :]
        for pick, score in ((a, b), (b, a)):
            for rule, options in rules.items():
                strength, weight = choose(recurrent[pick], linear[pick], targets[pick], options)
                predicted = predictions(recurrent[score], linear[score], weight, shifts[strength])
                right = float((predicted == targets[score]).double().mean())
                scores[rule].append([right, macro_f1(predicted, targets[score], classes), strength])
    return {rule: [statistics.mean(column) for column in zip(*rows)] for rule, rows in scores.items()}


def main() -> None:
    import torch
    from blend_choice import cached_parts
    from suite import SETS, load_split

    from rnnonnx.data import sorted_labels
    from rnnonnx.model import prior_shift

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/rnnonnx-data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-suite"), help="the suite's --out (its splits)")
    parser.add_argument("--only", default="", help="comma-separated set names (default: every set found)")
    parser.add_argument("--halves", type=int, default=20)
    parser.add_argument("--cache", type=Path, help="blend_choice.py's cache of validation probabilities (read, or written)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SETS)
    rules = [f"{s:g}" for s in STRENGTHS] + [CHOSEN]
    print("Held-out half of the validation rows: accuracy / macro-F1 at each strength of the adjustment.\n")
    print("| set (validation rows, classes, largest / smallest class) | " + " | ".join(rules) + " |")
    print("|---|" + "---:|" * len(rules))
    totals: dict[str, list[list[float]]] = {rule: [] for rule in rules}
    for name in names:
        parts = load_split(name, args.data, args.out, 0)
        if parts is None:
            continue
        recurrent, linear, targets = cached_parts(name, parts, SETS[name], args.cache)
        counts = Counter(parts["train"][1])
        labels = sorted_labels(list(counts))  # the order training gives the classes
        rows = [counts[label] for label in labels]
        shifts = {s: torch.tensor(prior_shift(rows, s) or [0.0] * len(rows), dtype=recurrent.dtype) for s in STRENGTHS}
        results = held_out(recurrent.double(), linear.double(), targets, {s: v.double() for s, v in shifts.items()}, args.halves)
        cells = [f"{name} ({len(targets)}, {len(rows)}, {max(rows) / min(rows):.1f}x)"]
        for rule in rules:
            accuracy, f1, strength = results[rule]
            cells.append(f"{100 * accuracy:.2f} / {100 * f1:.2f}" + (f" (s {strength:.2f})" if rule == CHOSEN else ""))
            totals[rule].append([100 * accuracy, 100 * f1])
        print("| " + " | ".join(cells) + " |", flush=True)
    if totals[rules[0]]:
        means = [" / ".join(f"{statistics.mean(column):.2f}" for column in zip(*totals[rule])) for rule in rules]
        print("| mean over the sets | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()

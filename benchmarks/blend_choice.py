"""How to choose the linear member's share on few validation rows: by accuracy (the default rule) or
by a smooth score (log-loss, Brier), judged on held-out halves of the validation rows only.

For each set of the suite, trains the default recipe on the suite's split (``benchmarks/suite.py``:
train rows to fit, validation rows to choose) up to the choice of the share, and stops there (no
calibration, refit or export): the choice happens before them. It keeps the validation
probabilities of the recurrent members and of the linear member, then ``--halves`` times splits
the validation rows into two random halves, chooses the share on one half by each rule and scores
the blend at that share on the other half (and the other way round). The test rows are not read.

    python benchmarks/blend_choice.py [--only SET,SET] [--halves 500] [--cache DIR]

With ``--cache DIR`` the probabilities are kept there (one ``SET.pt`` each) and read back on the next
run instead of training again.

Prints a markdown table: per set, the validation rows, the share each rule picks on all of them,
and the mean held-out accuracy of each rule's picks (with the mean share picked on halves).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


class _Chosen(Exception):
    """Raised from inside training once the share's inputs are known."""

    def __init__(self, recurrent: Any, linear: Any, targets: Any) -> None:
        super().__init__("chosen")
        self.parts = (recurrent, linear, targets)


def validation_parts(parts: dict[str, Any], analyzer: str) -> tuple[Any, Any, Any]:
    """(recurrent, linear, targets) on the validation rows: the two parts' probabilities as the
    default recipe's training has them when it chooses the share."""
    from suite import write_rows

    import rnnonnx
    from rnnonnx import linear, training

    n_train = len(parts["train"][0])

    def fixed_split(data: Any, config: Any) -> Any:
        rows = (data.texts, data.labels)
        return training.SplitRows((rows[0][:n_train], rows[1][:n_train]), (rows[0][n_train:], rows[1][n_train:]), ([], []), False)

    def capture(recurrent: Any, linear_part: Any, targets: Any, *_: Any) -> Any:
        raise _Chosen(recurrent, linear_part, targets)

    originals = training.split_rows, linear.choose_weight
    training.split_rows, linear.choose_weight = fixed_split, capture
    try:
        with tempfile.TemporaryDirectory(prefix="rnnonnx-blend-") as tmp:
            trainval = Path(tmp) / "trainval.csv"
            write_rows(trainval, (parts["train"][0] + parts["validation"][0], parts["train"][1] + parts["validation"][1]))
            options = {"analyzer": analyzer} if analyzer != "word" else {}
            try:
                rnnonnx.train(Path(tmp) / "run", trainval, **options)
            except _Chosen as chosen:
                return chosen.parts
    finally:
        training.split_rows, linear.choose_weight = originals
    raise RuntimeError("training never chose the linear member's share")


def cached_parts(name: str, parts: dict[str, Any], analyzer: str, cache: Path | None) -> tuple[Any, Any, Any]:
    """:func:`validation_parts` of one set, read from ``cache/name.pt`` when there, else computed
    and (with a ``cache``) kept there."""
    import torch

    cached = cache / f"{name}.pt" if cache else None
    if cached is not None and cached.exists():
        return torch.load(cached, weights_only=True)
    found = validation_parts(parts, analyzer)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(found, cached)
    return found


def _blend(recurrent: Any, linear: Any, weight: float) -> Any:
    return (1 - weight) * recurrent + weight * linear


def _smooth(rule: str, blend: Any, targets: Any) -> float:
    import torch

    if rule.endswith("log-loss"):
        return float(-blend[torch.arange(len(targets)), targets].clamp_min(1e-12).log().mean())
    return float(((blend - torch.nn.functional.one_hot(targets, blend.shape[1])) ** 2).sum(dim=1).mean())


def pick(rule: str, recurrent: Any, linear: Any, targets: Any) -> float:
    """The share ``rule`` picks on these rows (ties: the smaller share, as the default rule's last key).
    ``accuracy``: the default rule. ``log-loss``, ``brier``: the lowest score. ``1-SE, ...``: of the
    shares whose accuracy is within one standard error (``sqrt(p (1 - p) / n)`` at the best accuracy
    p) of the best, the one with the lowest score, so few rows leave the choice to the smooth score
    and many rows to accuracy."""
    from rnnonnx.linear import WEIGHT_GRID, choose_weight

    if rule == "accuracy":
        return choose_weight(recurrent, linear, targets)[0]
    if rule == "accuracy, smoothed":
        grid = list(WEIGHT_GRID)
        raw = [accuracy(recurrent, linear, targets, w) for w in grid]
        smoothed = [sum(raw[max(0, i - 1) : i + 2]) / len(raw[max(0, i - 1) : i + 2]) for i in range(len(grid))]
        return grid[max(range(len(grid)), key=lambda i: (smoothed[i], raw[i], -i))]
    candidates = list(WEIGHT_GRID)
    if rule.startswith("1-SE"):
        accuracies = {w: accuracy(recurrent, linear, targets, w) for w in WEIGHT_GRID}
        best = max(accuracies.values())
        band = (best * (1 - best) / max(1, len(targets))) ** 0.5
        candidates = [w for w in WEIGHT_GRID if accuracies[w] >= best - band - 1e-12]
    chosen, chosen_score = candidates[0], float("inf")
    for weight in candidates:
        score = _smooth(rule, _blend(recurrent, linear, weight), targets)
        if score < chosen_score - 1e-12:
            chosen, chosen_score = weight, score
    return chosen


def accuracy(recurrent: Any, linear: Any, targets: Any, weight: float) -> float:
    return float((_blend(recurrent, linear, weight).argmax(dim=1) == targets).double().mean())


RULES = ("accuracy", "accuracy, smoothed", "log-loss", "brier", "1-SE, log-loss", "1-SE, brier")


def held_out(recurrent: Any, linear: Any, targets: Any, halves: int, seed: int) -> dict[str, tuple[float, float]]:
    """Per rule: (mean held-out accuracy, mean share picked) over ``halves`` random splits, both ways."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[float]] = {rule: [] for rule in RULES}
    shares: dict[str, list[float]] = {rule: [] for rule in RULES}
    for _ in range(halves):
        order = torch.randperm(len(targets), generator=generator)
        a, b = order[: len(order) // 2], order[len(order) // 2 :]
        for choose, score in ((a, b), (b, a)):
            for rule in RULES:
                weight = pick(rule, recurrent[choose], linear[choose], targets[choose])
                scores[rule].append(accuracy(recurrent[score], linear[score], targets[score], weight))
                shares[rule].append(weight)
    return {rule: (statistics.mean(scores[rule]), statistics.mean(shares[rule])) for rule in RULES}


def main() -> None:
    from suite import SETS, load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/rnnonnx-data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnonnx-suite"), help="the suite's --out (its splits)")
    parser.add_argument("--only", default="", help="comma-separated set names (default: every set found)")
    parser.add_argument("--halves", type=int, default=500)
    parser.add_argument("--cache", type=Path, help="keep (and reuse) each set's validation probabilities here")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SETS)
    header = ["set", "validation rows"]
    header += [f"share on all rows, {rule}" for rule in RULES]
    header += [f"held-out half accuracy, {rule} (mean share)" for rule in RULES]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * 2 + "---:|" * (2 * len(RULES)))
    totals: dict[str, list[float]] = {rule: [] for rule in RULES}
    for name in names:
        parts = load_split(name, args.data, args.out, 0)
        if parts is None:
            continue
        recurrent, linear, targets = cached_parts(name, parts, SETS[name], args.cache)
        whole = [pick(rule, recurrent, linear, targets) for rule in RULES]
        results = held_out(recurrent, linear, targets, args.halves, seed=0)
        cells = [name, str(len(targets))] + [f"{w:g}" for w in whole]
        cells += [f"{100 * results[rule][0]:.2f} ({results[rule][1]:.2f})" for rule in RULES]
        for rule in RULES:
            totals[rule].append(100 * results[rule][0])
        print("| " + " | ".join(cells) + " |", flush=True)
    if totals[RULES[0]]:
        means = [f"{statistics.mean(totals[rule]):.2f}" for rule in RULES]
        print("| mean over the sets | | " + " | " * (len(RULES) - 1) + " | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()

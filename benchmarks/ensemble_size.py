"""How much does averaging members buy, and how many?

Trains single classifiers of one recipe.py experiment from several seeds on the *same*
train/validation split (recipe.py's seed-0 split of the built-in rows without the shipped test
split), then scores the mean probabilities of the first 2, 3, ... members on validation. Keeping
the split fixed separates the gain of averaging from split-to-split noise. No test rows are used.

    python benchmarks/ensemble_size.py R+epochs=15 --seeds 0,1,2,3,4
    python benchmarks/ensemble_size.py R+epochs=15+pool=max --seeds 0,1,2

Members are kept in --work (default /tmp/rnnonnx-ensemble/NAME/mSEED) and not retrained.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a recipe.py experiment name (single-member)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rnnonnx-ensemble"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import numpy as np
    import recipe
    import torch

    import rnnonnx.training as training
    from rnnonnx.config import TrainConfig
    from rnnonnx.run import load_run, read_held_out
    from rnnonnx.training import train_run as train

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.work / args.experiment.replace("/", "_")
    options = recipe.config_for(args.experiment)
    known = recipe._train_fields()
    extra = {k: v for k, v in options.items() if k not in known}
    fixed_split = training.split
    training.split = lambda labels, validation, test, seed: fixed_split(labels, validation, test, 0)
    data, _ = recipe.pool_without_test()
    for seed in seeds:
        out = work / f"m{seed}"
        if (out / "metrics.json").exists():
            continue
        config = TrainConfig(
            **{k: v for k, v in options.items() if k in known} | {"seed": seed, "validation": 0.1 / 0.9, "test": 0.0}
        )
        started = time.perf_counter()
        with recipe.patched(extra, total_steps=10**9):
            metrics = train(config, out, data, progress=False)
        print(
            f"member seed {seed}: val {100 * metrics.val_accuracy:.2f} (epoch {metrics.best_epoch}), "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )

    texts, labels = read_held_out(work / f"m{seeds[0]}", "validation")
    probabilities, gold = [], None
    for seed in seeds:
        run = load_run(work / f"m{seed}")
        with torch.no_grad():
            logits = run.model(torch.from_numpy(run.tokenizer.encode_batch(texts)))
        probabilities.append(torch.softmax(logits, dim=-1).numpy())
        gold = np.array([run.labels.index(label) for label in labels])
    single = [100 * float((p.argmax(1) == gold).mean()) for p in probabilities]
    print(
        f"| {args.experiment} | members (seeds {args.seeds}) | "
        + " / ".join(f"{a:.1f}" for a in single)
        + f" | mean {np.mean(single):.1f} |"
    )
    for k in range(2, len(seeds) + 1):
        accuracy = 100 * float((np.mean(probabilities[:k], axis=0).argmax(1) == gold).mean())
        print(f"| {args.experiment} | ensemble of the first {k} | {accuracy:.1f} | |")


if __name__ == "__main__":
    main()

"""The linear member's batch on many rows: refit only the linear member of a trained run at other
batch sizes and rates, the recurrent members kept as trained, and score the blend on held-out rows.

The run must have been trained on ``TRAIN`` with ``--test 0`` (so that its training and validation
rows are the split this script draws again) and without the refit; the held-out rows ``HELDOUT``
were seen by no choice. For each ``BATCH:LR`` the member is fitted as a run fits it
(:func:`rnnonnx.training.fit_linear_member`: early stopping; then
:func:`rnnonnx.training.add_linear_member`: its share chosen on validation), then the
blend with the run's recurrent members is scored on ``HELDOUT``: accuracy, macro-F1, the share, the
member's kept epoch and its fit's seconds, one process each so the variants do not share warm caches.

    python benchmarks/linear_batch.py --run RUN --train A.csv --heldout B.csv --try 64:0.02 256:0.04
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path


def one(run_dir: Path, train_csv: Path, heldout_csv: Path, batch: int, lr: float) -> dict:
    """The blend with the linear member fitted at ``batch`` and ``lr``, scored on the held-out rows."""
    import torch

    from rnnonnx import linear
    from rnnonnx.config import TrainConfig
    from rnnonnx.data import read_file
    from rnnonnx.evaluation import confusion_matrix, scores
    from rnnonnx.model import build_model, prior_shift, set_logit_shift
    from rnnonnx.run import load_run
    from rnnonnx.text import Tokenizer
    from rnnonnx.training import add_linear_member, fit_linear_member, logits_of, split_rows

    linear.batch_for = lambda rows: (batch, lr)
    run = load_run(run_dir)
    stored = run.model.config
    recurrent = build_model(
        replace(stored, linear_weight=0.0, linear_buckets=0, linear_groups=0, recurrent_len=0, logit_shift=(), temperature=1.0)
    )
    for target, source in zip(recurrent.members, run.model.members):
        target.load_state_dict(source.state_dict())
    tokenizer = Tokenizer(replace(run.tokenizer.spec, max_len=stored.recurrent_len), run.tokenizer.vocab)
    config = TrainConfig(test=0, seed=run.config["training"]["seed"])
    rows = split_rows(read_file(str(train_csv)), config)
    index = {name: i for i, name in enumerate(run.labels)}
    counts = torch.bincount(torch.tensor([index[n] for n in rows.train[1]]), minlength=len(index)).tolist()
    shift = prior_shift(counts, run.config["training"]["logit_adjustment"])
    cpu = torch.device("cpu")
    fitted = fit_linear_member(config, tokenizer, rows, index, None, cpu)
    choice = add_linear_member(recurrent, config, tokenizer, fitted, cpu, False, shift)
    set_logit_shift(choice.model, shift)
    heldout = read_file(str(heldout_csv))
    predicted = logits_of(choice.model, torch.from_numpy(choice.tokenizer.encode_batch(heldout.texts)), cpu).argmax(1)
    targets = [index[n] for n in heldout.labels]
    record = choice.record
    return {
        "batch": batch,
        "lr": lr,
        "heldout_accuracy": round(100 * float((predicted == torch.tensor(targets)).double().mean()), 2),
        "heldout_macro_f1": round(100 * scores(confusion_matrix(targets, predicted.tolist(), len(index)))["macro_f1"], 2),
        "weight": record["weight"],
        "best_epoch": record["best_epoch"],
        "seconds": record["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run trained on --train with --test 0 --no-refit")
    parser.add_argument("--train", type=Path, required=True, help="the CSV the run was trained on")
    parser.add_argument("--heldout", type=Path, required=True, help="labelled rows no choice saw")
    parser.add_argument("--try", dest="variants", nargs="+", default=["64:0.02", "128:0.0283", "256:0.04"], metavar="BATCH:LR")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(one(args.run, args.train, args.heldout, int(args.worker[0]), float(args.worker[1]))))
        return
    print("| batch | lr | held-out accuracy | macro-F1 | share | kept epoch | fit s |\n|---:|---:|---:|---:|---:|---:|---:|")
    for variant in args.variants:
        batch, lr = variant.split(":")
        command = [sys.executable, __file__, "--run", str(args.run), "--train", str(args.train), "--heldout", str(args.heldout)]
        done = subprocess.run([*command, "--worker", batch, lr], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {r['batch']} | {r['lr']:g} | {r['heldout_accuracy']:.2f} | {r['heldout_macro_f1']:.2f} | {r['weight']:g} "
            f"| {r['best_epoch']} | {r['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()

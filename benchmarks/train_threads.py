"""Training steps of the default LSTM with one and with two intra-op threads, interleaved.

Why ``--autotune`` trains its trials on one thread: on cores shared with other work, PyTorch's
second thread spin-waits at every step. Prints the seconds for ``--steps`` steps per round.

    python benchmarks/train_threads.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from rnnonnx.config import TrainConfig
    from rnnonnx.model import TextClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TextClassifier(TrainConfig().model_config(15000, 2, "last"))
    optimizer = torch.optim.Adam(model.parameters())
    ids, target = torch.randint(2, 15000, (32 * args.steps, 24)), torch.randint(0, 2, (32 * args.steps,))

    def steps(threads: int) -> float:
        torch.set_num_threads(threads)
        started = time.perf_counter()
        for i in range(args.steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(ids[i * 32 : (i + 1) * 32]), target[i * 32 : (i + 1) * 32])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    steps(1)  # warm-up
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.steps} steps (batch 32, 24 tokens):")
    for _ in range(args.rounds):
        print(f"2 threads {steps(2):.2f}s, 1 thread {steps(1):.2f}s", flush=True)


if __name__ == "__main__":
    main()

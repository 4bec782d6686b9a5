"""Parity and throughput of PyTorch against ONNX Runtime on one device, for the whole model matrix.

On an NVIDIA GPU machine (``--device cuda``): PyTorch on CUDA against ORT's CUDA execution provider,
after proving the session really runs on it. ``--device cpu`` runs the same check on the CPU (CI
runs it that way so the script cannot rot). Prints one table row per architecture.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rnnonnx.bundle import IDS_INPUT, PROBABILITIES
from rnnonnx.config import ModelConfig
from rnnonnx.exporting import synthetic_batches, to_onnx
from rnnonnx.model import ExportWrapper, TextClassifier
from rnnonnx.run import Run
from rnnonnx.text import Tokenizer, TokenizerSpec

PROVIDERS = {"cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"], "cpu": ["CPUExecutionProvider"]}


def build(arch: str, bidirectional: bool, layers: int, size: int, vocab: int, max_len: int) -> Run:
    """A randomly initialised model of the given shape, wrapped as a run for ``to_onnx``."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=vocab,
        num_classes=2,
        arch=arch,
        embed_dim=size,
        hidden=size,
        layers=layers,
        bidirectional=bidirectional,
        dropout=0.0,
    )
    tokenizer = Tokenizer(TokenizerSpec(max_len=max_len), ["<pad>", "<unk>"] + [f"t{i}" for i in range(vocab - 2)])
    return Run(Path("."), {"model": config.to_dict()}, TextClassifier(config).eval(), tokenizer, ["a", "b"], None)


def throughput(fn, ids: np.ndarray, seconds: float) -> float:
    """Texts per second of ``fn(ids)`` over about ``seconds`` after a warm-up call."""
    fn(ids)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn(ids)
        done += len(ids)
    return done / (time.perf_counter() - started)


def check(device: str, size: int, seconds: float) -> list[dict]:
    """One record per (arch, direction, layers): max |dp| and throughput of both engines."""
    rows = []
    for arch, bidirectional, layers in itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2]):
        run = build(arch, bidirectional, layers, size, vocab=2000, max_len=64)
        session = ort.InferenceSession(to_onnx(run), providers=PROVIDERS[device])
        if session.get_providers()[0] != PROVIDERS[device][0]:
            raise SystemExit(f"ONNX Runtime is not running on {PROVIDERS[device][0]}: {session.get_providers()}")
        wrapper = ExportWrapper(run.model).to(device).eval()

        def torch_probs(ids: np.ndarray, wrapper=wrapper) -> np.ndarray:
            with torch.no_grad():
                out = wrapper(torch.from_numpy(ids).to(device))[1]
            return out.cpu().numpy()

        def ort_probs(ids: np.ndarray, session=session) -> np.ndarray:
            return session.run([PROBABILITIES], {IDS_INPUT: ids})[0]

        worst = max(float(np.abs(torch_probs(ids) - ort_probs(ids)).max()) for ids in synthetic_batches(2000, 64))
        batch = np.random.default_rng(0).integers(1, 2000, size=(256, 32), dtype=np.int64)
        rows.append(
            {
                "arch": arch,
                "bidirectional": bidirectional,
                "layers": layers,
                "max_abs_diff": worst,
                "torch_texts_per_s": throughput(torch_probs, batch, seconds),
                "ort_texts_per_s": throughput(ort_probs, batch, seconds),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--size", type=int, default=128, help="embedding and hidden size")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per engine and model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("PyTorch sees no CUDA GPU: install a CUDA build of torch")
    rows = check(args.device, args.size, args.seconds)
    if args.json:
        print(json.dumps(rows))
        return
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {name}; onnxruntime {ort.__version__}; torch {torch.__version__}; batch 256 x 32 tokens; size {args.size}")
    print(f"{'model':<14} {'max |dp|':>10} {'torch/s':>10} {'ORT/s':>10} {'ORT/torch':>9}")
    for r in rows:
        model = f"{r['arch']}-{'bi' if r['bidirectional'] else 'uni'}-{r['layers']}"
        print(
            f"{model:<14} {r['max_abs_diff']:>10.2e} {r['torch_texts_per_s']:>10.0f} "
            f"{r['ort_texts_per_s']:>10.0f} {r['ort_texts_per_s'] / r['torch_texts_per_s']:>8.2f}x"
        )
    failed = [r for r in rows if r["max_abs_diff"] > 1e-5]
    if failed:
        raise SystemExit(f"{len(failed)} model(s) above 1e-5")


if __name__ == "__main__":
    main()

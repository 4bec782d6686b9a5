"""Where the time goes: ONNX Runtime's own profile of a bundle's text graph, by operator type, for
one text per call and for batches of 256 texts split as the predictor splits them.

    python benchmarks/op_profile.py BUNDLE [--threads 1] [--calls 30]

Prints a Markdown table: each operator type's share of the kernel time (profiling slows every call,
so absolute times would mislead; the shares do not move much).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np


def profile(
    bundle_dir: str, batches: list[list[str]], threads: int, calls: int, model: str = "model.text.onnx"
) -> collections.Counter:
    """Kernel microseconds per operator type over ``calls`` passes of ``batches`` through the
    bundle's text graph ``model`` (``model.text.int8.onnx`` for its int8 twin), after one warm-up pass."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="rnnonnx-profile-"), "profile")
    # from its path, so that ONNX Runtime finds the weights an int8 twin reads from the fp32 graph's file
    session = ort.InferenceSession(os.path.join(bundle_dir, model), options, providers=["CPUExecutionProvider"])
    feeds = [np.array(batch, dtype=object) for batch in batches]
    for feed in feeds:
        session.run(["probabilities"], {"text": feed})
    for _ in range(calls):
        for feed in feeds:
            session.run(["probabilities"], {"text": feed})
    events = json.load(open(session.end_profiling()))
    kernel: collections.Counter = collections.Counter()
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    skip = len(runs) - calls * len(feeds)  # the warm-up calls
    cutoff = runs[skip]["ts"] if runs else 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= cutoff:
            kernel[event["args"]["op_name"]] += event["dur"]
    return kernel


def main() -> None:
    from rnnonnx.bundle import Bundle
    from rnnonnx.data import read_builtin
    from rnnonnx.predictor import CPU_CALL_SIZE, text_calls

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    texts = read_builtin().texts[:256]
    calls, _ = text_calls(texts, Bundle(args.bundle).tokenizer.spec, CPU_CALL_SIZE)
    split = [[texts[i] for i in chosen] for chosen in calls]
    settings = {"one text per call": [[t] for t in texts[:64]], f"256 texts, {len(split)} calls": split}
    results = {name: profile(args.bundle, batches, args.threads, args.calls) for name, batches in settings.items()}
    ops = sorted({op for kernel in results.values() for op in kernel}, key=lambda op: -results[next(iter(results))][op])
    print(f"{args.threads} thread(s); share of ONNX Runtime's kernel time by operator type, text graph\n")
    print("| operator | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for op in ops:
        cells = [f"{100 * kernel[op] / sum(kernel.values()):.1f}%" for kernel in results.values()]
        if max(float(c[:-1]) for c in cells) >= 0.5:
            print(f"| {op} | " + " | ".join(cells) + " |")
    print("\nOperators under 0.5% everywhere are left out.")


if __name__ == "__main__":
    main()

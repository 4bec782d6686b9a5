"""Export a trained run to a bundle, proving on the way that ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

import datetime as _dt
import io
import json
import platform
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .bundle import FORMAT_VERSION, MODEL, write_bundle
from .errors import ParityError, RnnonnxError
from .run import Run, load_run
from .text import PAD_ID, UNK_ID

OPSET = 17
TOLERANCE = 1e-5
# Batch sizes and lengths of the synthetic parity batches (lengths are capped at max_len).
PARITY_BATCHES = (1, 2, 7, 32, 64)
TIE_MARGIN = 1e-6


def to_onnx(run: Run) -> bytes:
    """The ids-to-probabilities graph, with dynamic batch and sequence axes.

    Uses the TorchScript exporter (``dynamo=False``): in torch 2.13 the dynamo exporter freezes
    the sequence length of some recurrent models without saying so.
    """
    import onnx
    import torch

    from .model import ExportWrapper

    wrapper = ExportWrapper(run.model).eval()
    example = torch.randint(2, len(run.tokenizer.vocab), (2, 5))
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (example,), buffer, dynamo=False, opset_version=OPSET,
            input_names=["input_ids"], output_names=["logits", "probabilities"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name, model.producer_version = "rnnonnx", __version__
    model.doc_string = f"{run.config['model']['arch']} text classifier: int64 token ids [batch, sequence] (0 = padding, right-padded) -> logits, probabilities"
    set_metadata(model, run)
    onnx.checker.check_model(model, full_check=True)
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise RnnonnxError(f"exported graph uses non-standard op domains {foreign}")
    return model.SerializeToString()


def set_metadata(model: Any, run: Run) -> None:
    """Labels, tokenizer spec and format version travel inside the ONNX file itself."""
    spec = {k: v for k, v in run.tokenizer.to_dict().items() if k != "vocab"}
    entries = {
        "rnnonnx_format_version": str(FORMAT_VERSION),
        "rnnonnx_version": __version__,
        "labels": json.dumps(run.labels, ensure_ascii=False),
        "tokenizer": json.dumps(spec, ensure_ascii=False),
    }
    del model.metadata_props[:]
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def synthetic_batches(vocab_size: int, max_len: int, seed: int = 0):
    """Random id batches of every size in ``PARITY_BATCHES``: fixed lengths 1 and max_len, mixed
    lengths (including all-padding rows), and lengths in between."""
    rng = np.random.default_rng(seed)
    lengths = sorted({1, 2, max(1, max_len // 2), max_len})
    for batch in PARITY_BATCHES:
        for length in lengths:
            yield rng.integers(UNK_ID, vocab_size, size=(batch, length), dtype=np.int64)
        mixed = rng.integers(UNK_ID, vocab_size, size=(batch, max_len), dtype=np.int64)
        cut = rng.integers(0, max_len + 1, size=batch)
        cut[0] = max_len
        for row, keep in enumerate(cut):
            mixed[row, keep:] = PAD_ID
        yield mixed


def parity(run: Run, session: Any, output: str = "probabilities", batch_size: int = 64) -> dict[str, Any]:
    """Max abs difference of probabilities and argmax agreement, ORT vs PyTorch, on the
    validation texts and on synthetic batches. ``session`` is an ONNX Runtime session."""
    import torch

    from .model import ExportWrapper

    wrapper = ExportWrapper(run.model).eval()

    def compare(ids: np.ndarray) -> tuple[float, int, int]:
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(ids))[1].numpy()
        got = session.run([output], {"input_ids": ids})[0]
        top2 = np.sort(expected, axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > TIE_MARGIN
        disagree = int(((expected.argmax(1) != got.argmax(1)) & decided).sum())
        return float(np.abs(expected - got).max()), disagree, int((~decided).sum())

    report: dict[str, Any] = {"tolerance": TOLERANCE}
    texts, _ = run.held_out("validation")
    groups: dict[str, list[np.ndarray]] = {
        "validation": [run.tokenizer.encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)],
        "synthetic": list(synthetic_batches(len(run.tokenizer.vocab), run.tokenizer.spec.max_len)),
    }
    for name, batches in groups.items():
        results = [compare(ids) for ids in batches]
        report[name] = {
            "batches": len(batches),
            "rows": int(sum(len(b) for b in batches)),
            "max_abs_diff": max((r[0] for r in results), default=0.0),
            "argmax_disagreements": sum(r[1] for r in results),
            "ties_skipped": sum(r[2] for r in results),
        }
    report["passed"] = all(report[g]["max_abs_diff"] <= TOLERANCE and report[g]["argmax_disagreements"] == 0 for g in groups)
    return report


def session_for(model_bytes: bytes) -> Any:
    """A CPU ONNX Runtime session with the predictor's default optimizations."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def library_versions() -> dict[str, str]:
    """Versions of everything that shaped the bundle."""
    import numpy
    import onnx
    import onnxruntime
    import sklearn
    import torch

    return {
        "rnnonnx": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(),
    }


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Export ``run_dir`` to a bundle at ``out_dir`` (default ``RUN_DIR/bundle``).

    Raises :class:`ParityError` (and writes nothing) when ORT and PyTorch disagree beyond
    ``TOLERANCE`` or on any decided argmax.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "bundle"
    model_bytes = to_onnx(run)
    report = parity(run, session_for(model_bytes))
    for group in ("validation", "synthetic"):
        r = report[group]
        log(f"parity {group}: {r['rows']} rows in {r['batches']} batches, max |dp| {r['max_abs_diff']:.2e}, argmax disagreements {r['argmax_disagreements']}")
    if not report["passed"]:
        raise ParityError(f"ONNX Runtime and PyTorch disagree beyond {TOLERANCE:g} (see above); no bundle written")
    manifest = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": run.config["model"],
        "tokenizer": {k: v for k, v in run.tokenizer.to_dict().items() if k != "vocab"},
        "labels": run.labels,
        "training": {
            "config": run.config["training"],
            "data": run.config["data"],
            **{k: v for k, v in run.metrics.items() if k != "epochs"},
        },
        "versions": library_versions(),
        "parity": {MODEL: report},
    }
    write_bundle(out, {MODEL: model_bytes}, run.tokenizer, run.labels, manifest)
    log(f"bundle written to {out}")
    return out

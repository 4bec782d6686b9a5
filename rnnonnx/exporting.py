"""Export a trained run to a bundle, proving on the way that ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .bundle import (
    FORMAT_VERSION,
    GOLDEN,
    IDS_INPUT,
    INT8_MODEL,
    LOGITS,
    MODEL,
    OPSET,
    PROBABILITIES,
    TEXT_INT8_MODEL,
    TEXT_MODEL,
    is_bundle_dir,
    write_bundle,
)
from .config import MAX_PARITY_TOLERANCE, PARITY_TOLERANCE
from .errors import ParityError, RnnonnxError
from .files import check_output_directory
from .parity import ParityReport
from .run import BUNDLE_DIR, Run, load_run
from .text import PAD_ID, UNK_ID

TOLERANCE = PARITY_TOLERANCE  # the default; export --tolerance raises it
# Batch sizes of the synthetic parity batches: the small ones at fixed lengths 1, 2, max_len/2 and
# max_len and at mixed lengths, the large ones at mixed lengths (a max_len row, all-padding rows and
# lengths in between), which covers every size and length without running the largest batches four
# more times through PyTorch's recurrent layers (the bulk of an export's time at long max_len).
PARITY_BATCHES = (1, 2, 7, 32, 64)
FIXED_LENGTH_BATCHES = (1, 2, 7)
# Validation texts that the parity checks (and the int8 batch-independence check) read: an evenly
# spaced sample of at most this many, so that export time does not grow with the data set while
# every class of a sorted file is still met; the edge texts and synthetic batches come on top.
PARITY_TEXTS = 512
BATCH_DEPENDENCE_TEXTS = 256


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
    with torch.no_grad(), quiet_exporter():
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[IDS_INPUT],
            output_names=[LOGITS, PROBABILITIES],
            dynamic_axes={IDS_INPUT: {0: "batch", 1: "sequence"}, LOGITS: {0: "batch"}, PROBABILITIES: {0: "batch"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    set_metadata(model, run)
    onnx.checker.check_model(model, full_check=True)
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise RnnonnxError(f"exported graph uses non-standard op domains {foreign}")
    return model.SerializeToString()


def direct_onnx(run: Run) -> bytes | None:
    """The ids graph of :mod:`rnnonnx.fastgraph` (a few operators per member, built from the
    weights), with the metadata :func:`to_onnx` writes; ``None`` for models it does not cover."""
    import onnx

    from . import fastgraph

    if not fastgraph.supported(run.model.config):
        return None
    model = fastgraph.ids_model(run.model)
    set_metadata(model, run)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the TorchScript exporter's known-harmless warnings (PackPadded shape inference,
    LSTM batch-size advice, both checked away by the parity test), which it prints from C++
    straight to file descriptor 2; they are replayed if the export fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def set_metadata(model: Any, run: Run) -> None:
    """Labels, tokenizer spec and format version travel inside the ONNX file itself, with the
    producer and a one-line description of the ids graph."""
    model.producer_name, model.producer_version = "rnnonnx", __version__
    model.doc_string = (
        f"{run.config['model']['arch']} text classifier: "
        "int64 token ids [batch, sequence] (0 = padding, right-padded) -> logits, probabilities"
    )
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
        for length in lengths if batch in FIXED_LENGTH_BATCHES else []:
            yield rng.integers(UNK_ID, vocab_size, size=(batch, length), dtype=np.int64)
        mixed = rng.integers(UNK_ID, vocab_size, size=(batch, max_len), dtype=np.int64)
        cut = rng.integers(0, max_len + 1, size=batch)
        cut[0] = max_len
        for row, keep in enumerate(cut):
            mixed[row, keep:] = PAD_ID
        yield mixed


def sample(texts: list[str], count: int) -> list[str]:
    """At most ``count`` of ``texts``, evenly spaced, in order (all of them when there are fewer)."""
    step = max(1, -(-len(texts) // count))
    return texts[::step]


def parity_texts(run: Run) -> list[str]:
    """The validation texts the parity checks read (:data:`PARITY_TEXTS`)."""
    return sample(run.held_out("validation")[0], PARITY_TEXTS)


def parity(run: Run, session: Any, batch_size: int = 64, tolerance: float | None = None) -> dict[str, ParityReport]:
    """ORT against PyTorch, probabilities and top label, on a sample of the validation texts and on
    synthetic batches. ``session`` is an ONNX Runtime session of the ids graph; ``tolerance``
    (default ``TOLERANCE``) bounds the probabilities' difference."""
    import torch

    from .model import ExportWrapper

    wrapper = ExportWrapper(run.model).eval()
    texts = parity_texts(run)
    groups = {
        "validation": [run.tokenizer.encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)],
        "synthetic": list(synthetic_batches(len(run.tokenizer.vocab), run.tokenizer.spec.max_len)),
    }
    reports = {}
    for name, batches in groups.items():
        report = reports[name] = ParityReport(TOLERANCE if tolerance is None else tolerance)
        for ids in batches:
            with torch.no_grad():
                expected = wrapper(torch.from_numpy(ids))[1].numpy()
            report.add(expected, session.run([PROBABILITIES], {IDS_INPUT: ids})[0])
    return reports


def check_tolerance(tolerance: float) -> float:
    """``--tolerance``: a positive number up to ``MAX_PARITY_TOLERANCE`` (beyond it, parity would say little)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= MAX_PARITY_TOLERANCE:
        raise RnnonnxError(f"tolerance must be a number in (0, {MAX_PARITY_TOLERANCE:g}], not {tolerance!r}")
    return float(tolerance)


def refusal(reports: dict[str, ParityReport], tolerance: float) -> str:
    """Why export wrote nothing; when every top label agrees and the difference is small, how to
    accept it (float rounding in ONNX Runtime's recurrent kernels grows with the text's length)."""
    message = f"ONNX Runtime and PyTorch disagree beyond {tolerance:g} (see above); no bundle written"
    worst = max(r.max_abs_diff for r in reports.values())
    if all(r.label_disagreements == 0 for r in reports.values()) and worst * 2 <= MAX_PARITY_TOLERANCE:
        needed = float(f"{worst * 2:.0e}")
        message += (
            f". Every top label agrees and max |dp| is {worst:.2e}; if that is float rounding (ONNX Runtime's recurrent "
            f"kernels accumulate it over long texts), --tolerance {needed:g} accepts it (the manifest records it)"
        )
    return message


def passed(reports: dict[str, ParityReport]) -> bool:
    """Whether every group of a parity check passed."""
    return all(r.passed for r in reports.values())


def manifest_entry(reports: dict[str, ParityReport]) -> dict[str, Any]:
    """The manifest's parity record of one model file: whether it passed, and one report per group."""
    return {"passed": passed(reports), **{name: r.to_dict() for name, r in reports.items()}}


def session_for(model_bytes: bytes) -> Any:
    """A CPU ONNX Runtime session with the predictor's default optimizations."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def library_versions() -> dict[str, str]:
    """Versions of everything that shaped the bundle (scikit-learn's from its metadata: importing
    it would cost an export about a second)."""
    from importlib.metadata import version

    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "rnnonnx": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "scikit-learn": version("scikit-learn"),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def text_twin(
    run: Run, ids_bytes: bytes, ids_session: Any, name: str, log: Callable[[str], None]
) -> tuple[bytes, dict[str, Any]]:
    """The text-in graph built on ``ids_bytes``, checked against it on a sample of the validation texts and
    :func:`rnnonnx.textgraph.edge_texts`; raises :class:`ParityError` when they differ."""
    import onnx

    from . import textgraph

    thresholds = run.config.get("thresholds")  # a multi-label run's
    model = textgraph.text_model(onnx.load_from_string(ids_bytes), run.tokenizer, thresholds)
    textgraph.check(model)
    text_bytes = model.SerializeToString()
    texts = parity_texts(run)
    report = textgraph.parity(
        run.tokenizer, ids_session, session_for(text_bytes), texts + textgraph.edge_texts(), thresholds=thresholds
    )
    log(report.describe(f"{name} vs its ids graph"))
    if not report.passed:
        raise ParityError(
            f"{name}: in-graph tokenization disagrees with the Python tokenizer beyond {textgraph.TOLERANCE:g} "
            f"(see above); no bundle written"
        )
    return text_bytes, manifest_entry({"texts": report})


def int8_models(
    run: Run, model_bytes: bytes, ids_session: Any, log: Callable[[str], None]
) -> tuple[dict[str, bytes], dict[str, Any], dict[str, Any]]:
    """The int8 ids and text-in models, their text parity, and the manifest's ``int8`` entry:
    what became int8, the validation accuracy of fp32 and int8 side by side, and how far a
    validation text's int8 probabilities move between running alone and in other batches (fp32's
    own figure beside it). Warns loudly when int8 loses more than
    :data:`rnnonnx.quantize.MAX_ACCURACY_DROP` points or moves with its batch beyond the bound of
    its scheme (see :func:`rnnonnx.quantize.quantize_twin`)."""
    from .quantize import MAX_ACCURACY_DROP, accuracy, batch_dependence, quantize_twin, verdict

    int8_bytes, report = quantize_twin(model_bytes)
    bound = report.pop("batch_bound")
    int8_session = session_for(int8_bytes)
    text_bytes, text_report = text_twin(run, int8_bytes, int8_session, TEXT_INT8_MODEL, log)
    texts, gold = run.held_out("validation")
    fp32_acc = accuracy(ids_session, run.tokenizer, run.labels, texts, gold)
    int8_acc = accuracy(int8_session, run.tokenizer, run.labels, texts, gold)
    drop = None if fp32_acc is None or int8_acc is None else round(100.0 * (fp32_acc - int8_acc), 4)
    warning = verdict(fp32_acc, int8_acc)
    sampled = sample(texts, BATCH_DEPENDENCE_TEXTS)
    moved = {
        "int8": batch_dependence(int8_session, run.tokenizer, sampled),
        "fp32": batch_dependence(ids_session, run.tokenizer, sampled),
    }
    if drop is not None:
        log(
            f"int8: validation accuracy fp32 {fp32_acc:.4f}, int8 {int8_acc:.4f} ({100 * (int8_acc - fp32_acc):+.2f} points"
            + (", rows the refit trained on); " if run.refitted else "); ")
            + ", ".join(f"{layer} {kind}" for layer, kind in report["layers"].items())
        )
    if moved["int8"]["max_abs_diff"] is not None:
        log(
            f"int8: a text alone vs in other batches, max |dp| {moved['int8']['max_abs_diff']:.2e} "
            f"(fp32 {moved['fp32']['max_abs_diff']:.2e}) on {len(sampled)} validation texts"
        )
        if moved["int8"]["max_abs_diff"] > bound:
            warning = "; ".join(
                filter(
                    None,
                    [
                        warning,
                        f"int8 results move with their batch by up to {moved['int8']['max_abs_diff']:.2e}, "
                        f"beyond the {bound:g} this scheme is held to",
                    ],
                )
            )
    if warning:
        banner = "!" * 78
        log(f"{banner}\nWARNING: {warning}\n{banner}")
    entry = {
        **report,
        "validation_accuracy": {"fp32": fp32_acc, "int8": int8_acc, "drop_points": drop, "rows": len(texts)},
        "max_drop_points": MAX_ACCURACY_DROP,
        "batch_independence_max_abs_diff": moved["int8"]["max_abs_diff"],
        "batch_independence": {
            "bound": bound,
            "compositions": moved["int8"]["compositions"],
            "rows": len(sampled),
            "fp32_max_abs_diff": moved["fp32"]["max_abs_diff"],
        },
        "warning": warning,
    }
    return {INT8_MODEL: int8_bytes, TEXT_INT8_MODEL: text_bytes}, {TEXT_INT8_MODEL: text_report}, entry


def stored_model(run: Run, log: Callable[[str], None]) -> tuple[bytes, dict[str, Any]]:
    """The ids graph as the bundle ships it: embedding tables int8 with one scale per row
    (:mod:`rnnonnx.storage`). ``run.model`` gets the same dequantized tables, so parity checks ONNX
    Runtime against the PyTorch model whose weights are the shipped ones; the manifest entry holds
    the validation accuracy of the trained fp32 tables and of the shipped ones."""
    from .quantize import accuracy, quantize_int8
    from .storage import METHOD, use_stored_embeddings

    fp32_bytes = direct_onnx(run) or to_onnx(run)
    stored_bytes, _ = quantize_int8(fp32_bytes)
    use_stored_embeddings(run.model, fp32_bytes, stored_bytes)
    texts, gold = run.held_out("validation")
    thresholds = run.config.get("thresholds")  # a multi-label run's: its score is micro-F1
    measure = "validation_accuracy" if thresholds is None else "validation_micro_f1"
    fp32_acc = accuracy(session_for(fp32_bytes), run.tokenizer, run.labels, texts, gold, thresholds=thresholds)
    stored_acc = accuracy(session_for(stored_bytes), run.tokenizer, run.labels, texts, gold, thresholds=thresholds)
    if fp32_acc is not None and stored_acc is not None:
        log(
            f"storage: int8 embedding tables, {measure.replace('_', ' ')} {stored_acc:.4f} "
            f"(fp32 tables {fp32_acc:.4f}, {100 * (stored_acc - fp32_acc):+.2f} points)"
            + (" on validation rows the refit trained on" if run.refitted else "")
        )
    entry = {
        "method": METHOD,
        measure: {"fp32": fp32_acc, "stored": stored_acc, "rows": len(texts), "trained_on": run.refitted},
    }
    return stored_bytes, entry


def shared_files(
    files: dict[str, bytes], external: dict[str, list[str]], log: Callable[[str], None]
) -> tuple[dict[str, bytes], dict[str, list[str]]]:
    """Each model file of ``external`` rewritten (in order) to read its large tensors from the
    final bytes of the files listed for it (:func:`rnnonnx.storage.share_weights`), and the files
    each one now reads. Checked on the way: reading the external bytes back inline gives the very
    file it replaces, byte for byte, and ONNX Runtime loads it from the hosts' bytes."""
    import onnxruntime as ort

    from .storage import external_files, resolve, share_weights

    out = dict(files)
    reads = {}
    for name, host_names in external.items():
        if name not in out:
            continue
        hosts = {host: out[host] for host in host_names}
        shared = share_weights(out[name], hosts)
        used = external_files(shared)
        if resolve(shared, {host: out[host] for host in used}) != out[name]:
            raise RnnonnxError(f"{name}: its weights read from {', '.join(used)} differ from its own")
        options = ort.SessionOptions()
        options.add_external_initializers_from_files_in_memory(list(used), [out[h] for h in used], [len(out[h]) for h in used])
        ort.InferenceSession(shared, options, providers=["CPUExecutionProvider"])
        log(f"{name}: {len(out[name]):,} -> {len(shared):,} bytes, reading {sum(used.values()):,} from {', '.join(used)}")
        out[name], reads[name] = shared, sorted(used)
    return out, reads


def golden_texts(run: Run) -> list[str]:
    """The texts of ``golden.json``: the first validation texts and the text-in graph's edge
    texts (the longest cut short, still far past max_len)."""
    from .textgraph import edge_texts
    from .verification import GOLDEN_MAX_CHARS, GOLDEN_VALIDATION_TEXTS

    texts, _ = run.held_out("validation")
    return list(texts[:GOLDEN_VALIDATION_TEXTS]) + [text[:GOLDEN_MAX_CHARS] for text in edge_texts()]


def golden_file(run: Run, sessions: dict[str, Any]) -> bytes:
    """``golden.json``, for ``rnnonnx verify``: per model file, the probabilities of the ids graph
    of its precision (``sessions`` maps each model file to that session) on :func:`golden_texts`."""
    from .verification import golden_json, golden_probabilities

    texts = golden_texts(run)
    computed: dict[int, Any] = {}
    expected = {}
    for name, session in sessions.items():
        if id(session) not in computed:
            computed[id(session)] = golden_probabilities(session, run.tokenizer, texts)
        expected[name] = (computed[id(session)], "int8" if name in (INT8_MODEL, TEXT_INT8_MODEL) else "fp32")
    return golden_json(texts, expected)


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    quantize: str | None = None,
    tolerance: float | None = None,
) -> Path:
    """Export ``run_dir`` to a bundle at ``out_dir`` (default ``RUN_DIR/bundle``): the ids graph,
    its text-in twin and, with ``quantize="int8"``, both in int8 as well.

    Raises :class:`ParityError` (and writes nothing) when ORT and PyTorch disagree beyond
    ``tolerance`` (default ``TOLERANCE``; the manifest records the one used) or on any decided
    argmax, or when a text-in graph disagrees with its ids graph.
    """
    from .quantize import QUANTIZE_CHOICES

    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise RnnonnxError(f"unknown quantization {quantize!r}; use one of {', '.join(QUANTIZE_CHOICES)}")
    tolerance = TOLERANCE if tolerance is None else check_tolerance(tolerance)
    log = log or (lambda message: print(message, file=sys.stderr))
    run = load_run(run_dir)
    task = run.config.get("task", "multi-class")
    if quantize is not None and task == "multi-label":
        raise RnnonnxError("--quantize int8: not available for multi-label runs yet (its accuracy check is multi-class)")
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / BUNDLE_DIR
    check_output_directory(out, is_bundle_dir, "bundle", [run_dir])  # refuse before the conversion, not after it
    model_bytes, storage = stored_model(run, log)
    ids_session = session_for(model_bytes)
    ids_reports = parity(run, ids_session, tolerance=tolerance)
    for group, report in ids_reports.items():
        log(report.describe(group))
    if not passed(ids_reports):
        raise ParityError(refusal(ids_reports, tolerance))
    text_bytes, text_report = text_twin(run, model_bytes, ids_session, TEXT_MODEL, log)
    files = {MODEL: model_bytes, TEXT_MODEL: text_bytes}
    external = {MODEL: [TEXT_MODEL]}
    reports = {MODEL: manifest_entry(ids_reports), TEXT_MODEL: text_report}
    extra: dict[str, Any] = {}
    golden = {MODEL: ids_session, TEXT_MODEL: ids_session}
    if quantize == "int8":
        int8_files, int8_reports, extra["int8"] = int8_models(run, model_bytes, ids_session, log)
        files.update(int8_files)
        external.update({INT8_MODEL: [TEXT_MODEL], TEXT_INT8_MODEL: [TEXT_MODEL, INT8_MODEL]})
        reports.update(int8_reports)
        int8_session = session_for(int8_files[INT8_MODEL])
        golden.update({INT8_MODEL: int8_session, TEXT_INT8_MODEL: int8_session})
    files[GOLDEN] = golden_file(run, golden)
    files, external = shared_files(files, external, log)
    manifest = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": run.config["model"],
        "tokenizer": {k: v for k, v in run.tokenizer.to_dict().items() if k != "vocab"},
        "labels": run.labels,
        "task": task,
        **({"thresholds": run.config["thresholds"]} if task == "multi-label" else {}),
        "training": {
            "config": run.config["training"],
            "data": run.config["data"],
            **{k: v for k, v in run.metrics.to_dict().items() if k != "epochs"},
        },
        "versions": library_versions(),
        "parity": reports,
        "storage": storage,
        "external_data": external,
        **extra,
    }
    write_bundle(out, files, run.tokenizer, run.labels, manifest, inputs=[run_dir])
    log(f"bundle written to {out}")
    return out

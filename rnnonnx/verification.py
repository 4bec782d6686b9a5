"""``rnnonnx verify``: every check a deploy pipeline can run on a bundle before it ships it.

Loading a bundle checks what the chosen graph reads; ``verify`` checks everything: that every
listed file is there, a regular file of its listed size and sha256, and that no unlisted file
was added; that labels, tokenizer and manifest agree; that every model file loads in ONNX Runtime
and matches the bundle's labels and vocabulary; and that each graph still gives, on the bundle's
own golden examples (``golden.json``, written at export), the probabilities export recorded.

Golden examples are a few validation texts plus edge texts, each run alone (batch size 1, so an
int8 graph, whose activation scales depend on the batch, sees exactly what export ran), with the
probabilities of the ids graph of the same precision: the fp32 graphs must match within export's
parity tolerance, the int8 graphs within ``GOLDEN_TOLERANCE["int8"]`` (integer kernels differ a
little between CPU instruction sets). Needs only the predictor's dependencies.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import GOLDEN, IDS_INPUT, MANIFEST, PROBABILITIES, Bundle, parse_json
from .errors import BundleError, RnnonnxError
from .parity import ParityReport

GOLDEN_FORMAT = "rnnonnx-golden/1"
# fp32: export's parity tolerance (rnnonnx.exporting.TOLERANCE); int8: room for integer kernels that
# round differently on another CPU, still far below any change of a decided label.
GOLDEN_TOLERANCE = {"fp32": 1e-5, "int8": 1e-3}
# Validation texts stored as golden examples (the edge texts of rnnonnx.textgraph come on top).
GOLDEN_VALIDATION_TEXTS = 12
# Edge texts longer than this are cut, to keep golden.json small (they still pass max_len).
GOLDEN_MAX_CHARS = 600


def golden_probabilities(session: Any, tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Probabilities of an ids-graph session, one text per run (see the module docstring)."""
    rows = [session.run([PROBABILITIES], {IDS_INPUT: tokenizer.encode_batch([text])})[0][0] for text in texts]
    return np.array(rows, dtype=np.float32).reshape(len(texts), -1)


def golden_json(texts: Sequence[str], expected: Mapping[str, tuple[np.ndarray, str]]) -> bytes:
    """The bytes of ``golden.json``: the texts, and per model file its expected probabilities and
    tolerance; ``expected`` maps a model file to (probabilities, precision)."""
    record = {
        "format": GOLDEN_FORMAT,
        "texts": list(texts),
        "models": {
            name: {
                "precision": precision,
                "tolerance": GOLDEN_TOLERANCE[precision],
                "probabilities": [[float(p) for p in row] for row in proba],
            }
            for name, (proba, precision) in expected.items()
        },
    }
    return (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Golden:
    """The parsed, checked ``golden.json``."""

    texts: list[str]
    expected: dict[str, np.ndarray]
    tolerance: dict[str, float]


def read_golden(bundle: Bundle) -> Golden:
    """``golden.json`` of an opened bundle, every field checked (one-line :class:`BundleError`)."""
    path = bundle.path / GOLDEN
    data = parse_json(path, bundle.read(GOLDEN), "golden examples")
    if not isinstance(data, dict) or data.get("format") != GOLDEN_FORMAT:
        raise BundleError(
            f"{path}: not rnnonnx golden examples (format {data.get('format') if isinstance(data, dict) else None!r:.80})"
        )
    texts, models = data.get("texts"), data.get("models")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BundleError(f"{path}: 'texts' must be a non-empty list of strings")
    if not isinstance(models, dict):
        raise BundleError(f"{path}: 'models' must be an object")
    expected, tolerance = {}, {}
    width = len(bundle.labels)
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise BundleError(f"{path}: entry for {name!r:.80} is not an object")
        tol = entry.get("tolerance")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1 or math.isnan(tol):
            raise BundleError(f"{path}: tolerance of {name!r:.80} must be a number in [0, 1)")
        try:
            proba = np.array(entry.get("probabilities"), dtype=np.float64)
        except (TypeError, ValueError, RecursionError):
            proba = None
        if proba is None or proba.shape != (len(texts), width) or not np.isfinite(proba).all():
            raise BundleError(f"{path}: probabilities of {name!r:.80} must be {len(texts)} rows of {width} numbers")
        expected[name], tolerance[name] = proba.astype(np.float32), float(tol)
    return Golden(texts, expected, tolerance)


@dataclass
class GraphCheck:
    """One model file: whether it loads, and how it did on the golden examples."""

    file: str
    graph: str
    precision: str
    loaded: bool = False
    golden: dict[str, Any] | None = None
    # the bundle files whose bytes it reads as external data (its weights, stored once: rnnonnx.storage)
    weights_from: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form of one model file."""
        return {
            "file": self.file,
            "graph": self.graph,
            "precision": self.precision,
            "loaded": self.loaded,
            "golden": self.golden,
            "weights_from": self.weights_from,
        }


@dataclass
class Verification:
    """What ``rnnonnx verify`` found: per file, per model file, and one line per problem."""

    path: str
    files: list[dict[str, Any]] = field(default_factory=list)
    graphs: list[GraphCheck] = field(default_factory=list)
    golden_texts: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def problem(self, line: str) -> None:
        """Record a problem once (the same cause can surface in several checks)."""
        line = " ".join(line.split())
        if line not in self.problems:
            self.problems.append(line)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "bundle": self.path,
            "ok": self.ok,
            "files": self.files,
            "graphs": [g.to_dict() for g in self.graphs],
            "golden_texts": self.golden_texts,
            "problems": self.problems,
        }

    def to_json(self) -> str:
        """What ``rnnonnx verify --json`` prints."""
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    def text(self) -> str:
        """The short report printed when all is well (problems go to stderr, one per line)."""
        total = sum(f["bytes"] for f in self.files if isinstance(f["bytes"], int))
        intact = ", sizes and sha256 as listed" if self.files and all(f["ok"] for f in self.files) else ""
        lines = [f"{self.path}: {len(self.files)} files ({total:,} bytes){intact}"]
        for check in self.graphs:
            shared = f", weights read from {', '.join(check.weights_from)}" if check.weights_from else ""
            if check.golden is None:
                lines.append(f"{check.file}: loads ({check.graph} graph, {check.precision}{shared})")
            else:
                lines.append(
                    f"{check.file}: loads{shared}; {check.golden['rows']} golden examples within "
                    f"{check.golden['tolerance']:g} (max |dp| {check.golden['max_abs_diff']:.1e})"
                )
        if self.golden_texts is None:
            lines.append("golden examples: absent (bundle exported by an older rnnonnx); every other check ran")
        lines.append("ok" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def verify_bundle(path: str | os.PathLike, device: str = "cpu") -> Verification:
    """Run every check on the bundle at ``path`` (see the module docstring); never raises for a
    problem of the bundle, which is a line of ``problems`` instead."""
    from .predictor import MODEL_FILES, Predictor

    result = Verification(str(path))
    try:
        bundle = Bundle.manifest_only(path)
    except BundleError as exc:
        result.problem(str(exc))
        return result
    for problem in bundle.checksum_problems():
        result.problem(problem)
    files = bundle.manifest.get("files")
    if isinstance(files, dict):
        result.files = [
            {
                "name": name,
                "bytes": entry.get("bytes") if isinstance(entry, dict) else None,
                "sha256": entry.get("sha256") if isinstance(entry, dict) else None,
                "ok": not any(p.startswith(f"{bundle.path / str(name)}:") for p in result.problems),
            }
            for name, entry in files.items()
        ]
        for extra in sorted(p.name for p in bundle.path.iterdir() if p.name != MANIFEST and p.name not in files):
            result.problem(f"{bundle.path / extra}: not listed in the manifest (added after export?)")
    try:
        bundle.load_contents()
    except BundleError as exc:
        result.problem(str(exc))
        bundle = None
    golden = None
    if bundle is not None and bundle.has(GOLDEN):
        try:
            golden = read_golden(bundle)
            result.golden_texts = len(golden.texts)
        except BundleError as exc:
            result.problem(str(exc))
            result.golden_texts = 0
    listed = files if isinstance(files, dict) else {}
    for (graph, precision), name in MODEL_FILES.items():
        if name not in listed:
            continue
        check = GraphCheck(name, graph, precision)
        result.graphs.append(check)
        try:
            predictor = Predictor(path, device=device, graph=graph, precision=precision, batch_size=1)
            check.loaded = True
            check.weights_from = predictor.bundle.external_data(name)
            if golden is None:
                continue
            if name not in golden.expected:
                result.problem(f"{Path(path) / GOLDEN}: no expected probabilities for {name}")
                continue
            report = ParityReport(golden.tolerance[name])
            report.add(golden.expected[name], predictor.predict_proba(golden.texts))
            check.golden = report.to_dict()
            if not report.passed:
                result.problem(
                    f"{Path(path) / name}: golden examples differ from export's (max |dp| {report.max_abs_diff:.2e}, "
                    f"tolerance {report.tolerance:g}, {report.label_disagreements} label disagreement(s))"
                )
        except RnnonnxError as exc:
            result.problem(str(exc))
    if golden is not None:
        for name in golden.expected:
            if name not in listed:
                result.problem(
                    f"{Path(path) / GOLDEN}: has expected probabilities for {name!r:.80}, which the bundle does not list"
                )
    return result

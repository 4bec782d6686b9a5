"""The lightweight predictor: a bundle on ONNX Runtime, with numpy only (no torch, no scikit-learn)."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle import IDS_INPUT, INT8_MODEL, MODEL, PRECISIONS, PROBABILITIES, TEXT_INPUT, TEXT_INT8_MODEL, TEXT_MODEL, Bundle
from .config import DEVICES
from .errors import BundleError, InputTypeError, RnnonnxError
from .text import Tokenizer, TokenizerSpec, pad_ids

if TYPE_CHECKING:
    from .explanation import Explanation

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
GRAPHS = ("auto", "ids", "text")
MODEL_FILES = {
    ("ids", "fp32"): MODEL,
    ("text", "fp32"): TEXT_MODEL,
    ("ids", "int8"): INT8_MODEL,
    ("text", "int8"): TEXT_INT8_MODEL,
}
# What graph="auto" runs when the bundle has it: text-in, faster at batch 1 and 256 by
# benchmarks/graph_speed.py (no Python tokenization). Its lowercasing is the C library's; glibc
# 2.36 matches the rule at every code point (tests/test_textgraph.py checks the host it runs on).
DEFAULT_GRAPH = "text"
# Lone surrogates cannot be encoded for ONNX Runtime; like U+FFFD they are not word characters,
# so replacing them changes no token.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters per text-in batch, counted as rows x the batch's longest text: what bounds ONNX
# Runtime's memory on the text-in graph (see text_batches). 256 sentences of up to 1,024
# characters still share a batch; a text of 4 MB goes alone.
TEXT_BATCH_CHARS = 1 << 18
# Model calls split by token count (see text_batches): the fewest rows a split-off batch keeps, and
# how many more steps than a batch's shortest text its longest may take.
MIN_SPLIT_ROWS = 16
PADDING_SLACK = 0.25
# The fewest rows of a part when a model call is cut into parts for several threads (see
# thread_parts): a smaller part costs more in hand-off than it saves.
MIN_PART_ROWS = 8
# Most texts per model call by default. On the CPU, ONNX Runtime's recurrent kernels compute a
# call's input products for every step before walking the steps, so a call of B texts keeps
# T x B x 4H gate values in flight, likely beyond the caches when B is large (not measured
# directly); very short texts want large calls instead, each call having a fixed cost. Calls of 64 ran five of the benchmark
# suite's sets at 0.99x-1.14x the speed of calls of 256 on one thread and 1.00x-1.19x on two
# (fp32; benchmarks/call_size.py), where 32 lost 12% on the shortest texts. A GPU wants large calls.
CPU_CALL_SIZE = 64
CUDA_CALL_SIZE = 256
GPU_HINT = 'install the GPU build: pip install "rnnonnx[gpu]" (onnxruntime-gpu, with CUDA and cuDNN libraries it can load)'
SHADOW_HINT = (
    "both onnxruntime and onnxruntime-gpu are installed and the CPU build shadows the GPU one; run: "
    "pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu"
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _gpu_build_shadowed() -> bool:
    """Whether onnxruntime-gpu is installed but the CPU onnxruntime's files won (pip cannot swap them)."""
    from importlib import metadata

    try:
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Prediction:
    """One text's prediction, in the shape every face of rnnonnx uses (Python, ``predict --json``,
    Node, the HTTP server): the top label, its probability, and every label's probability.

    ``label`` is ``None`` when the top probability is below the ``min_score`` asked for (the
    model abstains; ``score`` still holds that probability). ``top`` holds the ``top_k`` best
    labels as ``{"label", "score"}`` entries, best first, when ``top_k`` was asked for.

    A multi-label model's prediction also has ``labels``: every label whose probability reaches
    its threshold, best first (possibly none); ``label`` is the first of them, or ``None`` when
    the set is empty, and ``score`` the top probability. Multi-class predictions have no ``labels``.
    """

    label: str | None
    score: float
    probabilities: dict[str, float] = field(default_factory=dict)
    top: list[dict[str, Any]] | None = None
    labels: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``label``, ``score``, ``probabilities`` (``labels`` for a multi-label
        model, ``top`` when asked for)."""
        record: dict[str, Any] = {"label": self.label, "score": self.score, "probabilities": dict(self.probabilities)}
        if self.labels is not None:
            record["labels"] = list(self.labels)
        if self.top is not None:
            record["top"] = [dict(entry) for entry in self.top]
        return record


def predictions_from_proba(
    proba: np.ndarray,
    labels: Sequence[str],
    top_k: int | None = None,
    min_score: float | None = None,
    thresholds: Sequence[float] | None = None,
) -> list[Prediction]:
    """Turn probability rows into :class:`Prediction` objects (the one place that does).

    ``top_k``: also list the K most probable labels (-1: every label), best first; ties keep
    label order. ``min_score``: below it, ``label`` is ``None``. ``thresholds`` (one per label)
    makes the rows a multi-label model's: each prediction's ``labels`` are those at or above their
    threshold, or, with ``min_score``, at or above ``min_score`` whatever their own threshold.
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or (top_k < 1 and top_k != -1)):
        raise RnnonnxError(f"top_k must be a positive integer or -1 (every label), not {top_k!r}")
    if min_score is not None and not (isinstance(min_score, (int, float)) and 0.0 <= float(min_score) <= 1.0):
        raise RnnonnxError(f"min_score must be a probability between 0 and 1, not {min_score!r}")
    names = list(labels)
    k = len(names) if top_k is None or top_k == -1 else min(top_k, len(names))
    out = []
    limits = None
    if thresholds is not None:
        if len(thresholds) != len(names):
            raise RnnonnxError(f"{len(thresholds)} thresholds for {len(names)} labels")
        limits = np.full(len(names), min_score, dtype=np.float32) if min_score is not None else np.asarray(thresholds, np.float32)
    for row in np.asarray(proba, dtype=np.float32):
        values = [float(p) for p in row]
        best = int(row.argmax())
        label = names[best] if min_score is None or values[best] >= min_score else None
        chosen = None
        if limits is not None:
            chosen = [names[j] for j in np.argsort(-row, kind="stable") if row[j] >= limits[j]]
            label = chosen[0] if chosen else None
        top = None
        if top_k is not None:
            order = np.argsort(-row, kind="stable")[:k]
            top = [{"label": names[j], "score": values[j]} for j in order]
        out.append(Prediction(label, values[best], dict(zip(names, values)), top, chosen))
    return out


def text_batches(steps: Sequence[int], batch_size: int, budget: int, sizes: Sequence[int] | None = None) -> list[list[int]]:
    """Row indices of each model call: texts sorted by ``steps`` (token counts, or estimates of
    them), at most ``batch_size`` of them, and at most ``budget`` counted as rows x the batch's
    largest of ``sizes`` (characters, for the text-in graph; ``steps`` when not given; a larger
    text goes alone). The in-graph tokenizer pads every row to the batch's longest token list
    before truncating to ``max_len``, so its memory grows with that product, not with the tokens.

    A batch of at least ``MIN_SPLIT_ROWS`` rows also ends before a text of more than
    ``PADDING_SLACK`` more steps than its first: ONNX Runtime's recurrent kernels compute every row
    up to the batch's longest text, so padding is work (PyTorch's packed sequences skip it), and a
    few calls of similar lengths beat one padded call (2.2x at batch 256 on the built-in
    sentences). Results do not depend on the split (no text's arithmetic sees another text)."""
    sizes = steps if sizes is None else sizes
    order = sorted(range(len(steps)), key=lambda i: (steps[i], sizes[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    largest = 0
    for i in order:
        padded = len(current) >= MIN_SPLIT_ROWS and steps[i] > (1 + PADDING_SLACK) * max(1, steps[current[0]])
        if current and (padded or len(current) >= batch_size or (len(current) + 1) * max(1, largest, sizes[i]) > budget):
            batches.append(current)
            current, largest = [], 0
        current.append(i)
        largest = max(largest, sizes[i])
    if current:
        batches.append(current)
    return batches


def text_calls(texts: Sequence[str], spec: TokenizerSpec, batch_size: int) -> tuple[list[list[int]], list[int]]:
    """The text-in graph's model calls for ``texts`` (row indices, :func:`text_batches`), grouped by
    estimated token counts (:meth:`TokenizerSpec.estimated_steps`) within the character budget,
    and those estimates (what a call costs, for :func:`thread_parts`)."""
    steps = [spec.estimated_steps(t) for t in texts]
    return text_batches(steps, batch_size, TEXT_BATCH_CHARS, [len(t) for t in texts]), steps


def thread_parts(batches: Sequence[Sequence[int]], lengths: Sequence[int], threads: int) -> list[list[int]]:
    """The model calls of ``batches`` shared out among ``threads`` single-threaded runs: a call
    costing more than its share of the whole (rows x its longest text) is cut into up to
    ``threads`` contiguous parts of at least ``MIN_PART_ROWS`` rows; costliest parts first, so
    threads that take the next part when free end close together. Independent runs on one thread
    each beat one run on ONNX Runtime's intra-op pool, whose threads meet at every step of the
    recurrence (and, for one text, only slow it down)."""
    costs = [len(batch) * max(1, max(lengths[i] for i in batch)) for batch in batches]
    total = sum(costs)
    parts: list[list[int]] = []
    for batch, cost in zip(batches, costs):
        count = max(1, min(threads, len(batch) // MIN_PART_ROWS, -(-threads * cost // max(1, total))))
        bounds = [len(batch) * k // count for k in range(count + 1)]
        parts += [list(batch[start:end]) for start, end in zip(bounds, bounds[1:])]
    return sorted(parts, key=lambda part: -len(part) * max(1, max(lengths[i] for i in part)))


def providers_for(device: str) -> list[str]:
    """The execution providers to ask for; ``cuda`` without the CUDA provider is an error."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise RnnonnxError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cuda" and CUDA_PROVIDER not in available:
        hint = SHADOW_HINT if _gpu_build_shadowed() else GPU_HINT
        raise RnnonnxError(f"device 'cuda': this onnxruntime has no CUDA execution provider ({', '.join(available)}); {hint}")
    if device in ("cuda", "auto") and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


class Predictor:
    """Classify texts with a bundle written by ``rnnonnx export``.

    Loading checks the bundle's format version, the checksum of every file it reads, and that labels,
    tokenizer and the model it runs belong together (see :class:`rnnonnx.bundle.Bundle` and
    ``_check_session``); ``rnnonnx verify`` checks the rest. ``predict`` and
    ``predict_proba`` are safe to call from several threads at once (ONNX Runtime sessions
    are, and tokenization keeps no shared mutable state).

    ``graph`` picks the ONNX graph: ``ids`` tokenizes in Python and feeds token ids to
    ``model.onnx``; ``text`` feeds raw strings to ``model.text.onnx``, which tokenizes inside
    ONNX Runtime; ``auto`` takes ``DEFAULT_GRAPH`` when the bundle has it and ONNX Runtime can
    load it, else ``ids``. Both give the same probabilities (within 1e-6). ``precision="int8"``
    runs the int8 twin of the chosen graph (``rnnonnx export --quantize int8``).
    ``session_config`` adds ONNX Runtime session config entries (e.g. the server turns off
    ``session.intra_op.allow_spinning``, so idle intra-op threads leave the cores to the event loop;
    only sessions on CUDA keep an intra-op pool, see ``threads``).

    ``batch_size`` is the most texts one model call holds (default ``CPU_CALL_SIZE`` on the CPU,
    ``CUDA_CALL_SIZE`` on CUDA); ``predict`` takes any number of texts and splits them.

    ``threads`` (default: every core this process may use) is how many cores one call may keep
    busy. On the CPU, each model run takes one thread: one text runs alone on the caller's thread
    (the fastest way, since ONNX Runtime's intra-op threads only slow a single row down), and a
    batch is cut into parts that run side by side on up to ``threads`` threads (see
    :func:`thread_parts`); like the grouping of texts, this does not change results (see
    ``predict_proba``). On CUDA, ``threads`` sets ONNX Runtime's intra-op threads, and a batch
    runs as one call. The ``threads`` attribute holds the count in use (1 on CUDA).
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        graph: str = "auto",
        session_config: Mapping[str, str] | None = None,
    ) -> None:
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise RnnonnxError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if graph not in GRAPHS:
            raise RnnonnxError(f"unknown graph {graph!r}; use one of {', '.join(GRAPHS)}")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1
        ):
            raise RnnonnxError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.bundle = Bundle(bundle_dir)
        self.precision = precision
        self.graph = self._pick_graph(graph, precision)
        self.model_file = MODEL_FILES[(self.graph, precision)]
        if threads is not None and threads < 1:
            raise RnnonnxError("threads must be at least 1")
        self._threads, self._session_config = threads, dict(session_config or {})
        # The bytes of files whose weights a session reads (kept alive as long as the sessions).
        self._host_bytes: list[dict[str, bytes]] = []
        wanted = providers_for(device)
        # On the CPU, sessions run on the calling thread alone and a call's parts run side by side
        # (see thread_parts); CUDA keeps ONNX Runtime's own threads and one run per batch.
        self._single_threaded_runs = wanted[0] == CPU_PROVIDER
        self._pool: Any = None
        self._pool_lock = threading.Lock()
        options = self._session_options()
        self._options, self._wanted, self._ids_session = options, wanted, None
        try:
            self.session = self._open(ort, options, wanted)
        except BundleError:
            raise
        except RnnonnxError as exc:
            if graph != "auto" or self.graph == "ids":
                raise
            # e.g. a C library without the C.UTF-8 locale that StringNormalizer asks for
            warnings.warn(f"{exc}; running the ids graph instead", RuntimeWarning, stacklevel=2)
            self.graph, self.model_file = "ids", MODEL_FILES[("ids", precision)]
            self.session = self._open(ort, options, wanted)
        self.providers = self.session.get_providers()
        if wanted[0] == CUDA_PROVIDER and CUDA_PROVIDER not in self.providers:
            if device == "cuda":
                raise RnnonnxError(
                    f"device 'cuda': ONNX Runtime fell back to {self.providers} "
                    f"(CUDA or cuDNN libraries missing, or no GPU); {GPU_HINT}"
                )
            warnings.warn(
                f"CUDA execution provider is installed but unusable; running on {self.providers}", RuntimeWarning, stacklevel=2
            )
        self.device = "cuda" if CUDA_PROVIDER in self.providers else "cpu"
        default_size = CUDA_CALL_SIZE if self.device == "cuda" else CPU_CALL_SIZE
        self.batch_size: int = default_size if batch_size is None else int(batch_size)
        if self._single_threaded_runs:
            from .machine import usable_cores

            self.threads: int = threads or usable_cores()
        else:
            # what the sessions were opened with (CUDA, or its fallback to the CPU); batches run whole
            self.threads = 1

    def _session_options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # ONNX Runtime would also print its own log line for each error it raises; the exception,
        # turned into one line (see _run), is what the user sees.
        options.log_severity_level = 4
        if self._single_threaded_runs or self._threads is not None:
            options.intra_op_num_threads = 1 if self._single_threaded_runs else self._threads
            options.inter_op_num_threads = 1
        for key, value in self._session_config.items():
            options.add_session_config_entry(key, value)
        return options

    def _open(self, ort: Any, options: Any, providers: list[str], model_file: str | None = None) -> Any:
        model_file = model_file or self.model_file
        try:
            model = self.bundle.read(model_file)
            hosts = {name: self.bundle.read(name) for name in self.bundle.external_data(model_file)}
        except OSError as exc:
            raise RnnonnxError(f"{self.bundle.path / model_file}: cannot read it ({exc.strerror})") from None
        if hosts:
            # Its weights live in other files of the bundle (rnnonnx.storage): ONNX Runtime reads them
            # from these verified bytes, never from the disk again. A fresh SessionOptions per session,
            # since the files given stay attached to the options object.
            options = self._session_options()
            options.add_external_initializers_from_files_in_memory(
                list(hosts), list(hosts.values()), [len(b) for b in hosts.values()]
            )
            self._host_bytes.append(hosts)
        try:
            session = ort.InferenceSession(model, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise RnnonnxError(f"{self.bundle.path / model_file}: ONNX Runtime cannot load it ({_first_line(exc)})") from None
        self._check_session(session, model_file)
        return session

    def _check_session(self, session: Any, model_file: str) -> None:
        """The graph matches the bundle's labels and vocabulary: its input and output names, its
        output width, the labels in its metadata, and one probe run (for the ids graph, on the
        vocabulary's largest id, which a model with a smaller embedding table cannot look up).
        A re-signed bundle whose files do not belong together fails here, with one line, instead
        of at the first prediction or with wrong label names."""
        path = self.bundle.path / model_file
        graph = "text" if model_file in (TEXT_MODEL, TEXT_INT8_MODEL) else "ids"
        wanted = TEXT_INPUT if graph == "text" else IDS_INPUT
        inputs, outputs = [i.name for i in session.get_inputs()], {o.name: o for o in session.get_outputs()}
        if wanted not in inputs or PROBABILITIES not in outputs:
            raise BundleError(
                f"{path}: not an rnnonnx {graph} graph (inputs {inputs}, outputs {sorted(outputs)}; "
                f"expected {wanted!r} in, {PROBABILITIES!r} out)"
            )
        width = len(self.bundle.labels)
        shape = outputs[PROBABILITIES].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            raise BundleError(f"{path}: gives probabilities of shape {shape}, but labels.json has {width} labels")
        try:
            stored = session.get_modelmeta().custom_metadata_map.get("labels")
        except UnicodeDecodeError:  # ONNX Runtime decodes metadata strings as UTF-8
            raise BundleError(f"{path}: its metadata is not valid UTF-8 (a damaged model file)") from None
        if stored is not None:
            try:
                same = json.loads(stored) == self.bundle.labels
            except (ValueError, RecursionError):
                same = False
            if not same:
                raise BundleError(f"{path}: its labels ({stored:.80}) are not those of labels.json")
        if graph == "text":
            probe: Any = np.array(["probe"], dtype=object)
            what = "a one-word text"
        else:
            top = len(self.bundle.tokenizer.vocab) - 1
            probe, what = np.array([[top]], dtype=np.int64), f"the vocabulary's largest id ({top})"
        try:
            out = session.run([PROBABILITIES], {wanted: probe})[0]
        except Exception as exc:  # onnxruntime's own exception types
            raise BundleError(f"{path}: fails on {what} ({_first_line(exc)}); do its files belong to this bundle?") from None
        if out.shape != (1, width):
            raise BundleError(
                f"{path}: gives probabilities of shape {out.shape} for one text, but labels.json has {width} labels"
            )
        if not np.isfinite(out).all():
            raise BundleError(f"{path}: gives non-finite probabilities (a damaged or diverged model)")

    def _run(self, feed: dict[str, Any], session: Any = None, model_file: str | None = None) -> np.ndarray:
        """One session run (by default of the graph this predictor runs): ONNX Runtime's failures
        and non-finite probabilities (a damaged or diverged model) are one-line errors, never
        silent garbage."""
        session, model_file = session or self.session, model_file or self.model_file
        try:
            out = session.run([PROBABILITIES], feed)[0]
        except UnicodeEncodeError:
            raise
        except Exception as exc:  # onnxruntime's own exception types
            raise RnnonnxError(f"{self.bundle.path / model_file}: ONNX Runtime failed ({_first_line(exc)})") from None
        if not math.isfinite(out.sum()):  # probabilities cannot overflow a sum: one reduction checks them all
            raise BundleError(f"{self.bundle.path / model_file}: gave non-finite probabilities (a damaged or diverged model)")
        return out

    def _helpers(self) -> Any:
        """The threads that run a call's other parts, started on first need (again in a forked
        child, which has none of its parent's threads)."""
        with self._pool_lock:
            if self._pool is None or self._pool[0] != os.getpid():
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="rnnonnx-predict")
                self._pool = (os.getpid(), pool)
            return self._pool[1]

    def _run_parts(self, batches: list[list[int]], lengths: Sequence[int], run: Any) -> None:
        """``run`` each model call, on up to ``threads`` threads (the caller's among them) when a
        call may keep more than one busy: each thread takes the next part when it is free.
        Concurrent callers share the helper threads; a caller never waits for a free one (it runs
        what no helper has taken)."""
        if len(batches) == 1 and (self.threads == 1 or len(batches[0]) < 2 * MIN_PART_ROWS):
            run(batches[0])  # e.g. one text: nothing to share out
            return
        parts = thread_parts(batches, lengths, self.threads) if self.threads > 1 else batches
        if len(parts) == 1:
            run(parts[0])
            return
        pending, lock, errors = iter(parts), threading.Lock(), []

        def drain() -> None:
            while not errors:
                with lock:
                    part = next(pending, None)
                if part is None:
                    return
                try:
                    run(part)
                except BaseException as exc:  # re-raised in the caller, below
                    errors.append(exc)

        helpers = [self._helpers().submit(drain) for _ in range(min(self.threads, len(parts)) - 1)]
        drain()
        for helper in helpers:
            # one still queued behind other callers' parts would find nothing left to run
            if not helper.cancel():
                helper.result()
        if errors:
            raise errors[0]

    def ids_proba(self, ids: np.ndarray) -> np.ndarray:
        """Probabilities of rows of token ids (``[rows, tokens]``, int64, padded with 0) on the ids
        graph in this predictor's precision, shared out among its threads like a batch of texts."""
        session, model_file = self.ids_session(), MODEL_FILES[("ids", self.precision)]
        out = np.empty((len(ids), len(self.bundle.labels)), dtype=np.float32)

        def run(chosen: list[int]) -> None:
            out[chosen] = self._run({IDS_INPUT: ids[chosen]}, session, model_file)

        if len(ids):
            self._run_parts([list(range(len(ids)))], [ids.shape[1]] * len(ids), run)
        return out

    def ids_session(self) -> Any:
        """An ONNX Runtime session of the ids graph in this predictor's precision: the one it runs,
        or one opened on first use when it runs the text-in graph (explanations feed ids)."""
        if self.graph == "ids":
            return self.session
        if self._ids_session is None:
            import onnxruntime as ort

            self._ids_session = self._open(ort, self._options, self._wanted, MODEL_FILES[("ids", self.precision)])
        return self._ids_session

    def _pick_graph(self, graph: str, precision: str) -> str:
        """The graph to run: the one asked for, which the bundle must have, or for ``auto``
        ``DEFAULT_GRAPH`` if bundled (bundles from before text-in graphs have only ids)."""
        if graph == "auto":
            graph = DEFAULT_GRAPH if self.bundle.has(MODEL_FILES[(DEFAULT_GRAPH, precision)]) else "ids"
        name = MODEL_FILES[(graph, precision)]
        if not self.bundle.has(name):
            hint = (
                "export it with 'rnnonnx export RUN_DIR --quantize int8'"
                if precision == "int8"
                else "it was exported by an older rnnonnx; export it again"
            )
            raise BundleError(f"{self.bundle.path}: bundle has no {name}; {hint}")
        return graph

    @property
    def tokenizer(self) -> Tokenizer:
        """The Python tokenizer of the ids graph (the text-in graph tokenizes inside ONNX Runtime)."""
        return self.bundle.tokenizer

    @property
    def labels(self) -> list[str]:
        """Label names, in the order of ``predict_proba``'s columns."""
        return list(self.bundle.labels)

    def predict_proba(self, texts: Sequence[str] | Iterable[str]) -> np.ndarray:
        """Probabilities ``[len(texts), len(labels)]`` (float32).

        Texts are grouped by token count (estimated from their words, for the text-in graph) before batching, so
        little compute goes to padding; the result keeps the input order and, in fp32, does not
        depend on the grouping (an LSTM's int8 twin moves a little with its batch, within the
        bound its manifest states: see :mod:`rnnonnx.quantize`).
        """
        if isinstance(texts, (str, bytes)):
            raise InputTypeError(f"predict_proba takes a list of texts, not one {type(texts).__name__}")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                hint = "; decode it first (.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
                raise InputTypeError(f"texts[{i}] is {type(text).__name__}, not str{hint}")
        if self.graph == "text":
            return self._proba_text(texts)
        encoded = [self.tokenizer.encode(t) for t in texts]
        if len(encoded) == 1:  # one text, the latency path: no grouping, no copy
            return self._run({IDS_INPUT: pad_ids(encoded)})
        out = np.empty((len(encoded), len(self.bundle.labels)), dtype=np.float32)
        lengths = [len(e) for e in encoded]

        def run(chosen: list[int]) -> None:
            out[chosen] = self._run({IDS_INPUT: pad_ids([encoded[i] for i in chosen])})

        if texts:
            self._run_parts(text_batches(lengths, self.batch_size, sys.maxsize), lengths, run)
        return out

    def _proba_text(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1:  # one text, the latency path: no grouping, no copy
            return self._run_texts(texts)
        out = np.empty((len(texts), len(self.bundle.labels)), dtype=np.float32)

        def run(chosen: list[int]) -> None:
            out[chosen] = self._run_texts([texts[i] for i in chosen])

        if texts:
            batches, steps = text_calls(texts, self.tokenizer.spec, self.batch_size)
            self._run_parts(batches, steps, run)
        return out

    def _run_texts(self, texts: list[str]) -> np.ndarray:
        """The text graph on ``texts``; a lone surrogate (which UTF-8 cannot encode) is read as U+FFFD."""
        try:
            return self._run({TEXT_INPUT: np.array(texts, dtype=object)})
        except UnicodeEncodeError:
            return self._run({TEXT_INPUT: np.array([_LONE_SURROGATE.sub("\ufffd", t) for t in texts], dtype=object)})

    def predict(
        self, texts: Sequence[str] | Iterable[str], top_k: int | None = None, min_score: float | None = None
    ) -> list[Prediction]:
        """One :class:`Prediction` per text: top label, score, every label's probability;
        ``top_k`` adds the K best labels (-1: all), ``min_score`` abstains below it. A multi-label
        bundle's predictions name the set of labels at or above their thresholds (``min_score``
        replaces every threshold)."""
        return predictions_from_proba(self.predict_proba(texts), self.bundle.labels, top_k, min_score, self.thresholds)

    @property
    def task(self) -> str:
        """``multi-class`` or ``multi-label`` (see :attr:`rnnonnx.bundle.Bundle.task`)."""
        return self.bundle.task

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label bundle's per-label thresholds (label order); ``None`` for multi-class."""
        return self.bundle.thresholds

    def explain(self, text: str, label: str | None = None) -> "Explanation":
        """Each token's contribution to ``label`` (default: the predicted one) by occlusion: the
        drop in its probability when that token is replaced by the unknown id. One batch of
        ``tokens + 1`` rows on the ids graph; see :mod:`rnnonnx.explanation`."""
        from .explanation import explain

        return explain(self, text, label)

    def __repr__(self) -> str:
        return (
            f"Predictor({str(Path(self.bundle.path))!r}, device={self.device!r}, graph={self.graph!r}, "
            f"precision={self.precision!r}, labels={self.labels!r})"
        )

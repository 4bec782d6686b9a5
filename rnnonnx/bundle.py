"""The one reader and writer of bundles: model files, tokenizer, labels and a checksummed manifest.

Needs only the standard library and numpy, so the predictor can load bundles without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import BundleError
from .text import Tokenizer

BUNDLE_FORMAT = "rnnonnx-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
LABELS = "labels.json"
MODEL = "model.onnx"
TEXT_MODEL = "model.text.onnx"
INT8_MODEL = "model.int8.onnx"
TEXT_INT8_MODEL = "model.text.int8.onnx"
GOLDEN = "golden.json"
PRECISIONS = ("fp32", "int8")
# The graphs' contract, shared by export, the text-in and int8 builders and every runtime: the ids
# graph takes int64 token ids [batch, sequence] (right-padded with 0) and gives logits and
# probabilities [batch, labels]; the text-in graph takes raw strings [batch] and gives probabilities
# and the top label's index. Standard ONNX at OPSET, plus ai.onnx.ml (LabelEncoder) and
# com.microsoft (Tokenizer) in the text-in graph.
IDS_INPUT = "input_ids"
TEXT_INPUT = "text"
LOGITS = "logits"
PROBABILITIES = "probabilities"
LABEL = "label"
# The text-in graph of a multi-label bundle also gives LABEL_SET: bool [batch, labels], each label's
# probability at or above its threshold (the manifest's "thresholds", also stored in the graph).
LABEL_SET = "labels"
TASKS = ("multi-class", "multi-label")
OPSET = 17
# Size limits of the files a bundle may hold, checked against the file's size before anything is
# read, so a damaged or hostile bundle cannot make a reader take unbounded time or memory. Each is
# far above what rnnonnx writes (the default LSTM bundle: manifest 14 kB, tokenizer 114 kB for
# 8,399 tokens, labels 19 bytes) and far below what would strain a process parsing it (Python
# holds a parsed JSON file in about ten times its size).
MANIFEST_MAX_BYTES = 16 << 20
TOKENIZER_MAX_BYTES = 64 << 20  # about two million tokens
LABELS_MAX_BYTES = 16 << 20
GOLDEN_MAX_BYTES = 16 << 20
# One ONNX file without external data is one protobuf message, which cannot exceed 2 GiB.
MODEL_MAX_BYTES = 2 << 30
MAX_BYTES = {MANIFEST: MANIFEST_MAX_BYTES, TOKENIZER: TOKENIZER_MAX_BYTES, LABELS: LABELS_MAX_BYTES, GOLDEN: GOLDEN_MAX_BYTES}
_SHA256_HEX = frozenset("0123456789abcdef")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_bundle_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bundle rnnonnx wrote (its manifest says so): the only kind of
    directory a bundle output may replace. Never raises, never reads more than a bounded file."""
    from .files import read_json_marker

    manifest = read_json_marker(Path(path) / MANIFEST)
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT


def write_bundle(
    out_dir: str | os.PathLike,
    files: Mapping[str, bytes],
    tokenizer: Tokenizer,
    labels: list[str],
    manifest: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write a complete bundle atomically: every file, then the manifest listing their sha256.

    ``files`` maps file names (e.g. ``model.onnx``) to their bytes; tokenizer and labels are added here.
    Only a bundle (or an empty directory) at ``out_dir`` is replaced, never one holding ``inputs``.
    """
    from .files import atomic_directory, write_json

    out_dir = Path(out_dir)
    with atomic_directory(out_dir, replaces=is_bundle_dir, kind="bundle", inputs=inputs) as tmp:
        for name, payload in files.items():
            (tmp / name).write_bytes(payload)
        write_json(tmp / TOKENIZER, tokenizer.to_dict())
        write_json(tmp / LABELS, labels)
        entries = {}
        for path in sorted(tmp.iterdir()):
            entries[path.name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        write_json(tmp / MANIFEST, {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": entries})
    return out_dir


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _reason(exc: BaseException) -> str:
    """The OS's words for a failed read, on one line."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _stat_regular(path: Path) -> os.stat_result:
    """``stat`` of a regular file, symlinks followed. Devices, FIFOs and sockets are refused before
    they are opened: reading ``/dev/urandom`` never ends and opening a FIFO blocks."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise BundleError(f"{path}: cannot read it ({_reason(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{path}: {_kind(info.st_mode)}, not a regular file (a bundle holds only regular files)")
    return info


def _open_regular(path: Path):
    """Open a regular file for reading, refusing anything else (even one swapped in after ``stat``:
    the open does not block and the opened file is checked again)."""
    _stat_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.fdopen(os.open(path, flags), "rb")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BundleError(f"{path}: cannot read it ({_reason(exc)})") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise BundleError(f"{path}: not a regular file (a bundle holds only regular files)")
    return handle


def read_limited(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything larger is refused unread."""
    path = Path(path)
    size = _stat_regular(path).st_size
    if size > limit:
        raise BundleError(f"{path}: {size:,} bytes, over the {limit:,}-byte limit for this file")
    with _open_regular(path) as handle:
        try:
            payload = handle.read(limit + 1)
        except OSError as exc:
            raise BundleError(f"{path}: cannot read it ({_reason(exc)})") from None
    if len(payload) > limit:
        raise BundleError(f"{path}: grew past the {limit:,}-byte limit for this file while being read")
    return payload


def parse_json(path: Path, payload: bytes, what: str) -> Any:
    """Parse a bundle's JSON file; every way it can fail (bad UTF-8, bad JSON, nesting deeper than
    the parser's recursion limit, integers too long to convert) is one :class:`BundleError`."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(
            f"{path}: {what} is not valid JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    except RecursionError:
        raise BundleError(f"{path}: {what} is nested too deeply to read") from None


def _type_name(value: Any) -> str:
    return (
        "null"
        if value is None
        else {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
            type(value), type(value).__name__
        )
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_file_name(name: Any) -> str | None:
    """Why ``name`` cannot be a file of a bundle (None when it can): a plain name inside the bundle."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0") or Path(name).name != name:
        return f"manifest names a file outside the bundle: {name!r}"
    return None


def tokenizer_from_json(path: Path, data: Any) -> Tokenizer:
    """A :class:`Tokenizer` from the parsed ``tokenizer.json``, every field checked for its type and
    value first, so that a damaged file is a one-line :class:`BundleError`, not a crash or a
    silently different tokenization (an unknown ``lowercase`` value would turn lowercasing off)."""
    from .config import ANALYZERS
    from .text import PAD_ID, TOKENIZER_FORMAT, UNK_ID, portable_pattern

    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object, found {_type_name(data)}")
    if data.get("format") != TOKENIZER_FORMAT:
        raise BundleError(f"{path}: unknown tokenizer format {data.get('format')!r} (this rnnonnx reads {TOKENIZER_FORMAT!r})")
    for key, kind, test in (
        ("analyzer", "a string", lambda v: isinstance(v, str)),
        ("lowercase", "a string", lambda v: isinstance(v, str)),
        ("max_len", "an integer", _is_int),
        ("vocab", "a list", lambda v: isinstance(v, list)),
    ):
        if key not in data:
            raise BundleError(f"{path}: no {key!r} field")
        if not test(data[key]):
            raise BundleError(f"{path}: {key!r} must be {kind}, not {_type_name(data[key])}")
    if data["analyzer"] not in ANALYZERS:
        raise BundleError(f"{path}: unknown analyzer {data['analyzer']!r} (one of {', '.join(ANALYZERS)})")
    if data["lowercase"] not in ("unicode-simple", "none"):
        raise BundleError(f"{path}: unknown lowercase rule {data['lowercase']!r} ('unicode-simple' or 'none')")
    if data["max_len"] < 1:
        raise BundleError(f"{path}: max_len must be at least 1, not {data['max_len']}")
    for key, expected in (("pad_id", PAD_ID), ("unk_id", UNK_ID)):
        if key in data and (not _is_int(data[key]) or data[key] != expected):
            raise BundleError(f"{path}: {key} must be {expected}, not {data[key]!r}")
    if "token_pattern" in data and data["token_pattern"] != portable_pattern(data["analyzer"]):
        raise BundleError(f"{path}: token_pattern is not the {data['analyzer']!r} analyzer's rule")
    vocab = data["vocab"]
    bad = next((i for i, token in enumerate(vocab) if not isinstance(token, str)), None)
    if bad is not None:
        raise BundleError(f"{path}: vocab entry {bad} is {_type_name(vocab[bad])}, not a string")
    try:
        return Tokenizer.from_dict(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: bad tokenizer ({exc})") from None


class Bundle:
    """A bundle on disk: its manifest, tokenizer, labels and model files.

    Opening checks the manifest; that every listed file is a regular file inside the bundle, of its
    listed size and within its size limit; the sha256 of the labels and the tokenizer; and that
    they agree with each other and with the manifest's model record (label count, vocabulary
    size, tokenizer spec). The model files are checked against their sha256 when read (``read``),
    so each byte a process uses is verified once, and a one-sentence ``rnnonnx predict`` does not
    hash the model files it never opens. ``verify()`` checks them all.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True) -> None:
        self._read_manifest(path, verify)
        problems = self.listing_problems()
        if problems:
            raise BundleError(problems[0])
        self.load_contents()

    @classmethod
    def manifest_only(cls, path: str | os.PathLike) -> "Bundle":
        """A bundle whose manifest is read and nothing else, for ``rnnonnx verify`` to list every
        problem of a bundle that does not open; ``load_contents`` completes it."""
        bundle = cls.__new__(cls)
        bundle._read_manifest(path, True)
        return bundle

    def _read_manifest(self, path: str | os.PathLike, verify: bool) -> None:
        self.path = Path(path)
        self.verified = verify
        self.labels: list[str] = []
        self._tokenizer: Tokenizer | None = None
        if not self.path.is_dir():
            raise BundleError(f"{self.path}: not a bundle directory (run 'rnnonnx export' to make one)")
        try:
            manifest = parse_json(self.path / MANIFEST, read_limited(self.path / MANIFEST, MANIFEST_MAX_BYTES), "manifest")
        except FileNotFoundError:
            raise BundleError(f"{self.path / MANIFEST}: missing manifest") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise BundleError(f"{self.path}: not an rnnonnx bundle (manifest format is {found!r:.80})")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION or not _is_int(version):
            raise BundleError(
                f"{self.path}: bundle format version {version!r:.40} is not supported "
                f"(this rnnonnx reads version {FORMAT_VERSION}); re-export it or upgrade rnnonnx"
            )
        self.manifest: dict[str, Any] = manifest

    def load_contents(self) -> None:
        """Read labels and tokenizer and check them against each other and the manifest."""
        labels = parse_json(self.path / LABELS, self.read(LABELS), "labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise BundleError(f"{self.path / LABELS}: expected a list of two or more label names")
        if len(set(labels)) != len(labels):
            raise BundleError(
                f"{self.path / LABELS}: label names repeat ({sorted({x for x in labels if labels.count(x) > 1})[0]!r:.80})"
            )
        self.labels = labels
        self._tokenizer = tokenizer_from_json(
            self.path / TOKENIZER, parse_json(self.path / TOKENIZER, self.read(TOKENIZER), "tokenizer")
        )
        problem = self.consistency_problem()
        if problem:
            raise BundleError(problem)

    def listing_problems(self) -> list[str]:
        """One line per listed file that is missing, not a regular file, outside the bundle, over
        its size limit or not of its listed size (empty when the listing holds)."""
        files = self.manifest.get("files")
        if not isinstance(files, dict) or MODEL not in files:
            return [f"{self.path}: manifest lists no {MODEL}"]
        problems = [
            f"{self.path / name}: missing (not listed in the manifest)" for name in (TOKENIZER, LABELS) if name not in files
        ]
        problems += [problem for problem in (self._entry_problem(name, entry) for name, entry in files.items()) if problem]
        return problems + self._external_data_problems(files)

    def _external_data_problems(self, files: dict[str, Any]) -> list[str]:
        """The manifest's ``external_data`` (model file -> the listed files it reads weights from,
        see :mod:`rnnonnx.storage`) must name only listed files, never the model itself."""
        record = self.manifest.get("external_data", {})
        where = f"{self.path / MANIFEST}: external_data"
        if not isinstance(record, dict):
            return [f"{where} must be an object, not {_type_name(record)}"]
        problems = []
        for name, hosts in record.items():
            if name not in files:
                problems.append(f"{where} names {name!r:.80}, which the manifest does not list")
            elif not isinstance(hosts, list) or not all(isinstance(h, str) and h in files and h != name for h in hosts):
                problems.append(f"{where} of {name} must list other files of the bundle, not {hosts!r:.80}")
        return problems

    def external_data(self, name: str) -> list[str]:
        """The bundle files whose bytes the model file ``name`` reads as ONNX external data."""
        record = self.manifest.get("external_data", {})
        hosts = record.get(name, []) if isinstance(record, dict) else []
        return list(hosts) if isinstance(hosts, list) else []

    def _entry_problem(self, name: Any, entry: Any) -> str | None:
        """What is wrong with one listed file, short of its checksum."""
        why = check_file_name(name)
        if why:
            return f"{self.path}: {why}"
        path = self.path / name
        if (
            not isinstance(entry, dict)
            or not _is_int(entry.get("bytes"))
            or entry["bytes"] < 0
            or not isinstance(entry.get("sha256"), str)
            or len(entry["sha256"]) != 64
            or not set(entry["sha256"]) <= _SHA256_HEX
        ):
            return f"{self.path}: manifest entry for {name!r} is not an object with 'bytes' (a size) and 'sha256' (64 hex digits)"
        limit = MAX_BYTES.get(name, MODEL_MAX_BYTES)
        if entry["bytes"] > limit:
            return f"{path}: the manifest lists {entry['bytes']:,} bytes, over the {limit:,}-byte limit for this file"
        try:
            size = _stat_regular(path).st_size
        except FileNotFoundError:
            return f"{path}: missing (listed in the manifest)"
        except BundleError as exc:
            return str(exc)
        if size != entry["bytes"]:
            return f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or replaced?)"
        return None

    def consistency_problem(self) -> str | None:
        """Whether labels and tokenizer agree with the manifest's record of the model they were
        exported with: the label count is the model's output width, the vocabulary size its number
        of embedding rows (a longer vocabulary would index past the table at prediction time)."""
        model = self.manifest.get("model")
        if model is not None and not isinstance(model, dict):
            return f"{self.path / MANIFEST}: 'model' must be an object, not {_type_name(model)}"
        model = model or {}
        for key in ("vocab_size", "num_classes"):
            if key in model and (not _is_int(model[key]) or model[key] < 1):
                return f"{self.path / MANIFEST}: model {key} must be a positive integer, not {model[key]!r:.40}"
        if "num_classes" in model and model["num_classes"] != len(self.labels):
            return (
                f"{self.path / LABELS}: {len(self.labels)} labels, but the model has "
                f"{model['num_classes']} outputs (manifest model.num_classes)"
            )
        if "labels" in self.manifest and self.manifest["labels"] != self.labels:
            return f"{self.path / LABELS}: differs from the labels the manifest records"
        problem = self._task_problem(model)
        if problem:
            return problem
        if self._tokenizer is None:
            return None
        vocab = len(self._tokenizer.vocab)
        if "vocab_size" in model and model["vocab_size"] != vocab:
            return (
                f"{self.path / TOKENIZER}: {vocab} tokens, but the model's embedding table has {model['vocab_size']} rows "
                "(manifest model.vocab_size)"
            )
        spec = self.manifest.get("tokenizer")
        if isinstance(spec, dict):
            own = self._tokenizer.spec
            mine = {"analyzer": own.analyzer, "lowercase": "unicode-simple" if own.lowercase else "none", "max_len": own.max_len}
            for key in ("analyzer", "lowercase", "max_len"):
                if key in spec and spec[key] != mine[key]:
                    return f"{self.path / TOKENIZER}: {key} {mine[key]!r} differs from the manifest's {spec[key]!r:.40}"
        return None

    def _task_problem(self, model: dict[str, Any]) -> str | None:
        """The manifest's ``task`` (absent in bundles from before multi-label: multi-class) agrees
        with the model record, and a multi-label bundle has one threshold in [0, 1] per label."""
        task = self.manifest.get("task", "multi-class")
        if task not in TASKS:
            return f"{self.path / MANIFEST}: unknown task {task!r:.40} (one of {', '.join(TASKS)})"
        if "multi_label" in model and model["multi_label"] != (task == "multi-label"):
            flag = f"{model['multi_label']!r:.10}"
            return f"{self.path / MANIFEST}: task {task!r} disagrees with the model record (multi_label {flag})"
        if task == "multi-class":
            return None
        values = self.manifest.get("thresholds")
        if (
            not isinstance(values, list)
            or len(values) != len(self.labels)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in values)
        ):
            return f"{self.path / MANIFEST}: a multi-label bundle needs 'thresholds', one number in [0, 1] per label"
        return None

    @property
    def task(self) -> str:
        """``multi-class`` (one label per text) or ``multi-label`` (a set of labels per text)."""
        return self.manifest.get("task", "multi-class")

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label bundle's per-label thresholds, in label order; ``None`` for multi-class."""
        return [float(v) for v in self.manifest["thresholds"]] if self.task == "multi-label" else None

    def read(self, name: str) -> bytes:
        """The bytes of a listed file, checked against the manifest's size and sha256 (unless
        opened with ``verify=False``); never more than the listed size is read."""
        path = self.file(name)
        entry = self.manifest["files"][name]
        try:
            with _open_regular(path) as handle:
                payload = handle.read(entry["bytes"] + 1)
        except FileNotFoundError:
            raise BundleError(f"{path}: missing (listed in the manifest)") from None
        except OSError as exc:
            raise BundleError(f"{path}: cannot read it ({_reason(exc)})") from None
        if len(payload) != entry["bytes"]:
            raise BundleError(
                f"{path}: {len(payload)}{'+' if len(payload) > entry['bytes'] else ''} bytes, "
                f"the manifest says {entry['bytes']} (truncated or replaced?)"
            )
        if self.verified and hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            raise BundleError(f"{path}: checksum mismatch with the manifest (corrupted or modified)")
        return payload

    def checksum_problems(self) -> list[str]:
        """One line per listed file that fails the listing check or whose sha256 is not the
        manifest's, including files no graph reads; files are hashed in chunks, never held whole."""
        problems = self.listing_problems()
        files = self.manifest.get("files")
        if not isinstance(files, dict) or MODEL not in files:
            return problems
        for name, entry in files.items():
            if self._entry_problem(name, entry):
                continue
            digest = hashlib.sha256()
            try:
                with _open_regular(self.path / name) as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
            except FileNotFoundError:
                problems.append(f"{self.path / name}: missing (listed in the manifest)")
                continue
            except OSError as exc:
                problems.append(f"{self.path / name}: cannot read it ({_reason(exc)})")
                continue
            except BundleError as exc:
                problems.append(str(exc))
                continue
            if digest.hexdigest() != entry["sha256"]:
                problems.append(f"{self.path / name}: checksum mismatch with the manifest (corrupted or modified)")
        return problems

    def verify(self) -> None:
        """Check every listed file against its size and sha256, including those not read yet."""
        problems = self.checksum_problems()
        if problems:
            raise BundleError(problems[0])

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (the text-in graph carries its own; this one feeds the ids graph)."""
        if self._tokenizer is None:
            raise BundleError(f"{self.path}: contents not loaded")
        return self._tokenizer

    def has(self, name: str) -> bool:
        """Whether the manifest lists ``name`` (e.g. an optional int8 or text-in model)."""
        return name in self.manifest.get("files", {})

    def file(self, name: str) -> Path:
        """Path of a file the manifest lists."""
        if not self.has(name):
            raise BundleError(f"{self.path}: bundle has no {name}")
        return self.path / name

"""The one reader and writer of bundles: model files, tokenizer, labels and a checksummed manifest.

Needs only the standard library and numpy, so the predictor can load bundles without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

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
OPSET = 17


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


def write_bundle(out_dir: str | os.PathLike, files: Mapping[str, bytes], tokenizer: Tokenizer, labels: list[str], manifest: Mapping[str, Any],
                 inputs: Iterable[str | os.PathLike] = ()) -> Path:
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


def _parse_json(path: Path, payload: bytes, what: str) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: {what} is not valid JSON ({exc})") from None


class Bundle:
    """A bundle on disk: its manifest, tokenizer, labels and model files.

    Opening checks the manifest, that every listed file is there with its listed size, and the
    sha256 of the labels. Every other file is checked against its sha256 when it is read
    (``read``), so each byte a process uses is verified once, and a one-sentence ``rnnonnx
    predict`` does not hash the model files it never opens. ``verify()`` checks them all.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True) -> None:
        self.path = Path(path)
        self.verified = verify
        if not self.path.is_dir():
            raise BundleError(f"{self.path}: not a bundle directory (run 'rnnonnx export' to make one)")
        try:
            manifest = _parse_json(self.path / MANIFEST, (self.path / MANIFEST).read_bytes(), "manifest")
        except FileNotFoundError:
            raise BundleError(f"{self.path / MANIFEST}: missing manifest") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{self.path}: not an rnnonnx bundle (manifest format is {manifest.get('format') if isinstance(manifest, dict) else None!r})")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{self.path}: bundle format version {version!r} is not supported (this rnnonnx reads version {FORMAT_VERSION}); re-export it or upgrade rnnonnx")
        self.manifest: dict[str, Any] = manifest
        self._check_listing()
        labels = _parse_json(self.path / LABELS, self.read(LABELS), "labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise BundleError(f"{self.path / LABELS}: expected a list of two or more label names")
        self.labels: list[str] = labels
        self._tokenizer: Tokenizer | None = None

    def _check_listing(self) -> None:
        """Every file the manifest lists is inside the bundle, present, and of its listed size."""
        files = self.manifest.get("files")
        if not isinstance(files, dict) or MODEL not in files:
            raise BundleError(f"{self.path}: manifest lists no {MODEL}")
        for name in (TOKENIZER, LABELS):
            if name not in files:
                raise BundleError(f"{self.path / name}: missing (not listed in the manifest)")
        for name, entry in files.items():
            path = self.path / name
            if Path(name).name != name:
                raise BundleError(f"{self.path}: manifest names a file outside the bundle: {name!r}")
            if not isinstance(entry, dict):
                raise BundleError(f"{self.path}: manifest entry for {name!r} is not an object")
            if not path.is_file():
                raise BundleError(f"{path}: missing (listed in the manifest)")
            size = path.stat().st_size
            if size != entry.get("bytes"):
                raise BundleError(f"{path}: {size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced?)")

    def read(self, name: str) -> bytes:
        """The bytes of a listed file, checked against the manifest's sha256 (unless opened with
        ``verify=False``)."""
        path = self.file(name)
        payload = path.read_bytes()
        if self.verified and hashlib.sha256(payload).hexdigest() != self.manifest["files"][name].get("sha256"):
            raise BundleError(f"{path}: checksum mismatch with the manifest (corrupted or modified)")
        return payload

    def verify(self) -> None:
        """Check every listed file against its size and sha256, including those not read yet."""
        self._check_listing()
        for name, entry in self.manifest["files"].items():
            if sha256_of(self.path / name) != entry.get("sha256"):
                raise BundleError(f"{self.path / name}: checksum mismatch with the manifest (corrupted or modified)")

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer, read on first use (the text-in graph carries its own)."""
        if self._tokenizer is None:
            try:
                self._tokenizer = Tokenizer.from_dict(_parse_json(self.path / TOKENIZER, self.read(TOKENIZER), "tokenizer"))
            except (KeyError, ValueError, TypeError) as exc:
                raise BundleError(f"{self.path / TOKENIZER}: bad tokenizer ({exc})") from None
        return self._tokenizer

    def has(self, name: str) -> bool:
        """Whether the manifest lists ``name`` (e.g. an optional int8 or text-in model)."""
        return name in self.manifest.get("files", {})

    def file(self, name: str) -> Path:
        """Path of a file the manifest lists."""
        if not self.has(name):
            raise BundleError(f"{self.path}: bundle has no {name}")
        return self.path / name

"""The lightweight predictor: a bundle on ONNX Runtime, with numpy only (no torch, no scikit-learn)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .bundle import MODEL, Bundle
from .errors import RnnonnxError
from .text import pad_ids

DEVICES = ("auto", "cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
GPU_HINT = 'install the GPU build: pip install "rnnonnx[gpu]" (onnxruntime-gpu, with CUDA and cuDNN libraries it can load)'


@dataclass(frozen=True)
class Prediction:
    """The top label of one text and its probability."""

    label: str
    score: float


def providers_for(device: str) -> list[str]:
    """The execution providers to ask for; ``cuda`` without the CUDA provider is an error."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise RnnonnxError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cuda" and CUDA_PROVIDER not in available:
        raise RnnonnxError(f"device 'cuda': this onnxruntime has no CUDA execution provider ({', '.join(available)}); {GPU_HINT}")
    if device in ("cuda", "auto") and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


class Predictor:
    """Classify texts with a bundle written by ``rnnonnx export``.

    Loading verifies the bundle's checksums and format version. ``predict`` and
    ``predict_proba`` are safe to call from several threads at once (ONNX Runtime sessions
    are, and tokenization keeps no shared mutable state).
    """

    def __init__(self, bundle_dir: str | os.PathLike, device: str = "auto", threads: int | None = None, batch_size: int = 256) -> None:
        import onnxruntime as ort

        self.bundle = Bundle(bundle_dir)
        self.tokenizer = self.bundle.tokenizer
        self.batch_size = batch_size
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise RnnonnxError("threads must be at least 1")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        wanted = providers_for(device)
        try:
            self.session = ort.InferenceSession(str(self.bundle.file(MODEL)), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise RnnonnxError(f"{self.bundle.path / MODEL}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
        self.providers = self.session.get_providers()
        if wanted[0] == CUDA_PROVIDER and CUDA_PROVIDER not in self.providers:
            if device == "cuda":
                raise RnnonnxError(f"device 'cuda': ONNX Runtime fell back to {self.providers} (CUDA or cuDNN libraries missing, or no GPU); {GPU_HINT}")
            warnings.warn(f"CUDA execution provider is installed but unusable; running on {self.providers}", RuntimeWarning, stacklevel=2)
        self.device = "cuda" if CUDA_PROVIDER in self.providers else "cpu"
        self._output = [o.name for o in self.session.get_outputs()].index("probabilities")

    @property
    def labels(self) -> list[str]:
        """Label names, in the order of ``predict_proba``'s columns."""
        return list(self.bundle.labels)

    def predict_proba(self, texts: Sequence[str] | Iterable[str]) -> np.ndarray:
        """Probabilities ``[len(texts), len(labels)]`` (float32).

        Texts are grouped by token count before batching, so little compute goes to padding;
        the result keeps the input order and does not depend on the grouping.
        """
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts, not one string")
        encoded = [self.tokenizer.encode(t) for t in texts]
        out = np.empty((len(encoded), len(self.bundle.labels)), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            ids = pad_ids([encoded[i] for i in chosen])
            out[chosen] = self.session.run(None, {"input_ids": ids})[self._output]
        return out

    def predict(self, texts: Sequence[str] | Iterable[str]) -> list[Prediction]:
        """The top label and its probability for each text."""
        proba = self.predict_proba(texts)
        best = proba.argmax(axis=1) if len(proba) else np.empty(0, dtype=np.int64)
        return [Prediction(self.bundle.labels[k], float(proba[i, k])) for i, k in enumerate(best)]

    def __repr__(self) -> str:
        return f"Predictor({str(Path(self.bundle.path))!r}, device={self.device!r}, labels={self.labels!r})"

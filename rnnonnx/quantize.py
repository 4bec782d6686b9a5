"""int8 models by ONNX Runtime's dynamic quantization, and an honest account of what became int8.

``quantize_dynamic`` stores weights as int8 and quantizes activations at run time. Its registry
of integer kernels covers ``MatMul`` (the output layer's ``Gemm``, which it rewrites as MatMul +
Add), ``Gather`` (the embedding table) and, among recurrent layers, ``LSTM`` only (as
``DynamicQuantizeLSTM``): a ``GRU`` or plain ``RNN`` layer is left in fp32, weights and
arithmetic, and the report says so.

Activations are quantized with one scale per tensor, that is per batch: unlike fp32, a text's
int8 probabilities move slightly (up to about 0.01 in our tests) with the texts it is batched
with. The int8 ids and text-in graphs agree within 1e-6 on identical batches.

Needs onnx and onnxruntime's quantization tools, so it runs at export time only; the predictor
just loads the files written here.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .bundle import IDS_INPUT, PROBABILITIES
from .text import Tokenizer

QUANTIZE_CHOICES = ("int8",)
# How many points of validation accuracy int8 may lose before export warns loudly.
MAX_ACCURACY_DROP = 1.0
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
INTEGER_OPS = ("DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul", "DequantizeLinear")


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """Drop the quantizer's generic advice to run shape pre-processing first (it only helps
    graphs with convolutions to fuse); its other warnings still show."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def quantize_int8(model_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """The ids graph with int8 weights and dynamically quantized activations, and a report of
    which layers that covers."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="rnnonnx-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model_bytes)
        with _without_preprocessing_advice():
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        quantized = target.read_bytes()
    return quantized, describe(onnx.load_from_string(model_bytes), onnx.load_from_string(quantized))


def describe(fp32: Any, int8: Any) -> dict[str, Any]:
    """Which layers of ``fp32`` the int8 graph ``int8`` computes in int8, from the nodes themselves."""
    from onnx import TensorProto

    before = Counter(n.op_type for n in fp32.graph.node)
    after = Counter(n.op_type for n in int8.graph.node)
    quantized_weights = {i.name for i in int8.graph.initializer if i.data_type in (TensorProto.INT8, TensorProto.UINT8)}
    embedding = any(n.op_type == "Gather" and n.input and n.input[0] in quantized_weights for n in int8.graph.node)
    recurrent = next((op for op in RECURRENT_OPS if before[op]), None)
    if recurrent is None:
        raise ValueError(f"no recurrent layer ({', '.join(RECURRENT_OPS)}) in the graph")
    layers = {
        "embedding": "int8" if embedding else "fp32",
        "recurrent": "fp32" if after[recurrent] else "int8",
        "output": "fp32" if after["Gemm"] else "int8",
    }
    report: dict[str, Any] = {
        "method": (
            "onnxruntime.quantization.quantize_dynamic: int8 weights (symmetric, per tensor), the embedding "
            "table as uint8 (asymmetric, per tensor), activations quantized to uint8 at run time"
        ),
        "layers": layers,
        "integer_ops": sorted(op for op in INTEGER_OPS if after[op]),
    }
    if layers["recurrent"] == "fp32":
        report["note"] = (
            f"ONNX Runtime's dynamic quantization has no int8 {recurrent} (its registry lists LSTM only among "
            f"recurrent layers): the {recurrent} layer keeps fp32 weights and arithmetic; only the embedding "
            "table and the output layer are int8"
        )
    return report


def accuracy(session: Any, tokenizer: Tokenizer, labels: Sequence[str], texts: Sequence[str], gold: Sequence[str], batch_size: int = 256) -> float | None:
    """Accuracy of an ids-graph ``session`` on labelled texts (``None`` without texts)."""
    if not texts:
        return None
    index = {name: i for i, name in enumerate(labels)}
    right = 0
    for start in range(0, len(texts), batch_size):
        ids = tokenizer.encode_batch(texts[start : start + batch_size])
        predicted = session.run([PROBABILITIES], {IDS_INPUT: ids})[0].argmax(axis=1)
        truth = np.array([index[g] for g in gold[start : start + batch_size]])
        right += int((predicted == truth).sum())
    return right / len(texts)


def verdict(fp32: float | None, int8: float | None) -> str | None:
    """A warning when int8 loses more than ``MAX_ACCURACY_DROP`` points (or cannot be measured)."""
    if fp32 is None or int8 is None:
        return "no validation rows in the run, so int8 accuracy was not measured: check it before shipping model.int8.onnx"
    drop = 100.0 * (fp32 - int8)
    if drop > MAX_ACCURACY_DROP:
        return (
            f"int8 loses {drop:.2f} points of validation accuracy (fp32 {fp32:.4f}, int8 {int8:.4f}), more than "
            f"{MAX_ACCURACY_DROP:g}: prefer the fp32 model"
        )
    return None

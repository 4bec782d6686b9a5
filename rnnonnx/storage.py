"""How a bundle stores its weights: embedding tables in int8, and every weight byte once.

The embedding tables are most of a model's bytes (the default LSTM ensemble: three tables of
8,399 x 64 floats, 6.4 MB of its 6.9 MB). Two standard-ONNX levers make the default bundle small:

1. **int8 embedding tables, one scale per row** (the scheme of :mod:`rnnonnx.quantize`: the graph
   scales the int8 table back to fp32 with ``Cast``/``Mul`` before its ``Gather``, a constant
   expression that ONNX Runtime folds once, at load). The
   arithmetic stays fp32 and no scale depends on the batch. The model a bundle ships *is* this
   model: export sets the PyTorch model's tables to the dequantized int8 ones
   (:func:`use_stored_embeddings`) and checks parity against that, and records the validation
   accuracy of the trained (fp32) tables beside the shipped ones.
2. **Weights once for both graphs.** ``model.text.onnx`` stays self-contained (one file runs text
   in any runtime). ``model.onnx``, the ids graph, holds its nodes and small constants only and
   reads its large tensors as standard ONNX external data (``location``, ``offset``, ``length``)
   from the very bytes of the same tensors inside ``model.text.onnx``
   (:func:`share_weights`). The manifest's ``external_data`` names the files each model file reads
   this way, so every reader fetches and checks (sha256) them with it: the Python predictor hands
   them to ONNX Runtime from verified memory, the Node.js client opens the model by path after
   checking every file, the browser client passes them as ``externalData``.

Needs onnx (export time only); readers need only the manifest's ``external_data`` record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Tensors at least this big are read from the host file; smaller ones (shapes, axes, scalars) stay
# inline, since ONNX Runtime reads some small constants while it builds the graph, before it
# consults external files given in memory.
EXTERNAL_MIN_BYTES = 1024
METHOD = (
    "embedding tables int8 with one fp32 scale per row (symmetric), scaled back to fp32 in the graph (folded at load); "
    "recurrent and output layers and all arithmetic fp32"
)


def use_stored_embeddings(model: Any, fp32_bytes: bytes, stored_bytes: bytes) -> int:
    """Set each embedding table of the PyTorch ``model`` to the dequantized int8 table that
    ``stored_bytes`` (the graph of :func:`rnnonnx.quantize.quantize_int8`) ships, found by being
    equal to the fp32 table of ``fp32_bytes`` (the graph exported from ``model``); returns how many.

    The product is computed in float32 as ONNX Runtime's ``Mul`` does (one correctly rounded
    multiply), so the reference and the shipped graph hold bit-identical tables."""
    import onnx
    import torch
    from onnx import numpy_helper

    stored = {i.name: i for i in onnx.load_from_string(stored_bytes).graph.initializer}
    fp32 = {i.name: i for i in onnx.load_from_string(fp32_bytes).graph.initializer}
    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    replaced = 0
    for name, initializer in fp32.items():
        if f"{name}/int8" not in stored:
            continue
        table = numpy_helper.to_array(initializer)
        q = numpy_helper.to_array(stored[f"{name}/int8"]).astype(np.float32)
        scale = numpy_helper.to_array(stored[f"{name}/row_scale"]).astype(np.float32)
        matches = [m for m in embeddings if np.array_equal(m.weight.detach().cpu().numpy(), table)]
        if not matches:
            raise ValueError(f"no embedding of the PyTorch model holds the table {name!r} of its graph")
        for module in matches:
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(q * scale))
        replaced += 1
    return replaced


def store_embeddings(model: Any) -> None:
    """Set every embedding table of a trained PyTorch ``model`` to what a bundle ships for it (its
    int8 rows times their scales): the model a bundle's graphs compute, from the run's fp32
    weights, for tools that time or compare PyTorch against a bundle (``rnnonnx bench``)."""
    import torch

    from .quantize import row_quantize

    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            q, scale = row_quantize(module.weight.detach().cpu().numpy())
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(q.astype(np.float32) * scale[:, None]))


def share_weights(model_bytes: bytes, hosts: Mapping[str, bytes]) -> bytes:
    """``model_bytes`` with each initializer of at least ``EXTERNAL_MIN_BYTES`` turned into external
    data pointing at the same bytes inside one of ``hosts`` (file name -> bytes, the files next to
    it), the first that holds them; a tensor no host holds stays inline."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load_from_string(model_bytes)
    for initializer in model.graph.initializer:
        if initializer.data_location == TensorProto.EXTERNAL:
            raise ValueError(f"initializer {initializer.name!r} already reads external data")
        if not initializer.HasField("raw_data"):
            initializer.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializer), initializer.name))
        raw = initializer.raw_data
        if len(raw) < EXTERNAL_MIN_BYTES:
            continue
        found = next(((name, at) for name, host in hosts.items() if (at := host.find(raw)) >= 0), None)
        if found is None:
            continue
        host_name, offset = found
        initializer.ClearField("raw_data")
        initializer.data_location = TensorProto.EXTERNAL
        for key, value in (("location", host_name), ("offset", str(offset)), ("length", str(len(raw)))):
            initializer.external_data.add(key=key, value=value)
    return model.SerializeToString()


def external_files(model_bytes: bytes) -> dict[str, int]:
    """The files a model reads as external data, with how many bytes it reads from each."""
    import onnx
    from onnx import TensorProto

    files: dict[str, int] = {}
    for initializer in onnx.load_from_string(model_bytes).graph.initializer:
        if initializer.data_location == TensorProto.EXTERNAL:
            info = {e.key: e.value for e in initializer.external_data}
            files[info["location"]] = files.get(info["location"], 0) + int(info["length"])
    return files


def resolve(model_bytes: bytes, files: Mapping[str, bytes]) -> bytes:
    """``model_bytes`` with every external tensor read back inline from ``files`` (name -> bytes):
    the self-contained graph ONNX Runtime sees, for tools that need one file."""
    import onnx
    from onnx import TensorProto

    model = onnx.load_from_string(model_bytes)
    for initializer in model.graph.initializer:
        if initializer.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in initializer.external_data}
        offset, length = int(info.get("offset", 0)), int(info["length"])
        initializer.raw_data = files[info["location"]][offset : offset + length]
        initializer.ClearField("external_data")
        initializer.ClearField("data_location")
    return model.SerializeToString()

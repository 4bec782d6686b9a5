"""rnnonnx: train recurrent text classifiers in PyTorch, ship them as ONNX bundles.

The API mirrors the command line verb for verb (see :mod:`rnnonnx.api`): ``train``, ``export``,
``predict``, ``predict_file``, ``evaluate``, ``bench``, ``explain``, plus ``load`` for a reusable
:class:`Predictor`. Training and export need the ``[train]`` extra; everything else needs only
onnxruntime and numpy. Modules load on first use, so ``import rnnonnx`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import bench, evaluate, explain, export, load, predict, predict_file, train
    from .predictor import Prediction, Predictor

_API = ("train", "export", "load", "predict", "predict_file", "evaluate", "bench", "explain")
_PREDICTOR = ("Predictor", "Prediction")
__all__ = [*_API, *_PREDICTOR, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _PREDICTOR:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'rnnonnx' has no attribute {name!r}")

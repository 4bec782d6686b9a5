"""rnnonnx: train recurrent text classifiers in PyTorch, ship them as ONNX bundles.

The API mirrors the command line verb for verb (see :mod:`rnnonnx.api`): ``train``, ``export``,
``predict``, ``predict_file``, ``evaluate``, ``bench``, ``serve``, ``verify``, ``explain``, plus ``load`` for a reusable
:class:`Predictor`. Training and export need the ``[train]`` extra; everything else needs only
onnxruntime and numpy. Modules load on first use, so ``import rnnonnx`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import bench, evaluate, explain, export, load, predict, predict_file, serve, train, verify
    from .predictor import Prediction, Predictor

__all__ = [
    "train",
    "export",
    "load",
    "predict",
    "predict_file",
    "evaluate",
    "bench",
    "serve",
    "verify",
    "explain",
    "Predictor",
    "Prediction",
    "__version__",
]
_PREDICTOR = ("Predictor", "Prediction")


def __getattr__(name: str) -> Any:
    if name in __all__ and name not in _PREDICTOR:
        from . import api

        return getattr(api, name)
    if name in _PREDICTOR:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'rnnonnx' has no attribute {name!r}")

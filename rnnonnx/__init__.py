"""rnnonnx: train recurrent text classifiers in PyTorch, ship them as ONNX bundles.

The training side (``train``, ``export``) needs the ``[train]`` extra; loading and running a
bundle needs only onnxruntime and numpy. Heavy modules load on first use, so
``import rnnonnx`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .predictor import Prediction, Predictor

__all__ = ["Predictor", "Prediction", "load", "train", "export", "__version__"]


def load(bundle_dir: str, **options: Any) -> "Predictor":
    """Open a bundle for prediction (``rnnonnx predict``'s API twin); options go to ``Predictor``."""
    from .predictor import Predictor

    return Predictor(bundle_dir, **options)


def train(out_dir: str, data: str | None = None, **options: Any) -> dict:
    """Train and write a run directory (``rnnonnx train``'s API twin); returns its metrics.

    ``data`` is a CSV/TSV/JSONL path (``None``: the built-in dataset); ``options`` are
    ``TrainConfig`` fields plus ``text_col``, ``label_col`` and ``format``.
    """
    from .data import read_file
    from .training import TrainConfig, train as _train

    file_options = {k: options.pop(k) for k in ("text_col", "label_col", "format") if k in options}
    texts = None
    if data is not None:
        texts = read_file(data, file_options.get("format"), file_options.get("text_col", "text"), file_options.get("label_col", "label"))
    return _train(TrainConfig(**options), out_dir, texts, progress=False)


def export(run_dir: str, out_dir: str | None = None, **options: Any) -> str:
    """Export a run to a bundle (``rnnonnx export``'s API twin); returns the bundle path."""
    from .export import export_run

    return str(export_run(run_dir, out_dir, **options))


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Prediction"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'rnnonnx' has no attribute {name!r}")

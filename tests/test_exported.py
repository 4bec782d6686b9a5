"""The committed bundles in exported/: intact, small, and they classify obvious sentences."""

from __future__ import annotations

import pytest

from rnnonnx import Predictor
from rnnonnx.bundle import Bundle
from rnnonnx.config import TrainConfig
from tests.conftest import ROOT

BUNDLES = ["lstm", "rnn"]


@pytest.mark.parametrize("name", BUNDLES)
def test_committed_bundle_is_intact_and_small(name):
    path = ROOT / "exported" / name
    bundle = Bundle(path)
    bundle.verify()  # every file against its sha256, not only those a predictor reads
    assert bundle.manifest["model"]["arch"] == name and bundle.manifest["model"]["members"] == TrainConfig().members
    assert bundle.manifest["training"]["data"]["source"] == "built-in:movie_sentences"
    assert "Hutto & Gilbert" in bundle.manifest["training"]["data"]["credit"]
    assert all(bundle.manifest["parity"][f]["passed"] for f in ("model.onnx", "model.text.onnx"))
    # three members, both graphs: int8 embedding tables, weights stored once (rnnonnx.storage)
    assert sum(p.stat().st_size for p in path.iterdir()) <= 3 * 1024 * 1024
    assert bundle.manifest["external_data"] == {"model.onnx": ["model.text.onnx"]}


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("graph", ["ids", "text"])
def test_committed_bundle_predicts(name, graph):
    predictor = Predictor(ROOT / "exported" / name, graph=graph)
    texts = ["A gorgeous, moving film.", "Flat, dull and far too long.", ""]
    labels = [p.label for p in predictor.predict(texts)]
    assert labels[:2] == ["pos", "neg"]

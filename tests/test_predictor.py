"""The lightweight predictor: API, edge-case texts, devices, thread safety, no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from rnnonnx import Prediction, Predictor
from rnnonnx.data import read_builtin
from rnnonnx.errors import BundleError, RnnonnxError

HAS_CUDA_PROVIDER = "CUDAExecutionProvider" in ort.get_available_providers()


def test_predict_and_predict_proba(tiny_bundle):
    predictor = Predictor(tiny_bundle, device="cpu")
    assert predictor.labels == ["neg", "pos"] and predictor.device == "cpu"
    texts = ["a gorgeous, moving film", "dull and lifeless"]
    proba = predictor.predict_proba(texts)
    assert proba.shape == (2, 2) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    predictions = predictor.predict(texts)
    assert all(isinstance(p, Prediction) for p in predictions)
    assert [p.label for p in predictions] == [predictor.labels[k] for k in proba.argmax(1)]
    assert predictions[0].score == pytest.approx(float(proba[0].max()))


def test_edge_case_texts_still_get_predictions(tiny_bundle):
    predictor = Predictor(tiny_bundle)
    texts = ["", "   ", "?!", "zzqx qqzv", "x", "great " * 10000]
    proba = predictor.predict_proba(texts)
    assert proba.shape == (6, 2) and np.isfinite(proba).all()
    assert np.allclose(proba[0], proba[1]) and np.allclose(proba[0], proba[2])
    long_alone = predictor.predict_proba(["great " * predictor.tokenizer.spec.max_len])
    assert np.allclose(proba[5], long_alone[0], atol=1e-6), "very long texts are truncated to max_len"
    assert predictor.predict_proba([]).shape == (0, 2) and predictor.predict([]) == []


def test_result_does_not_depend_on_batching(tiny_bundle):
    texts = read_builtin().texts[:300]
    batched = Predictor(tiny_bundle, batch_size=64).predict_proba(texts)
    single = Predictor(tiny_bundle, batch_size=1).predict_proba(texts)
    assert np.abs(batched - single).max() <= 1e-6


def test_a_single_string_is_refused(tiny_bundle):
    with pytest.raises(TypeError, match="list of texts"):
        Predictor(tiny_bundle).predict("one text")


def test_concurrent_predict_calls_are_safe(tiny_bundle):
    predictor = Predictor(tiny_bundle, threads=1)
    texts = read_builtin().texts[:400]
    chunks = [texts[i::8] for i in range(8)] * 4
    expected = [predictor.predict_proba(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(predictor.predict_proba, chunks))
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))


@pytest.mark.parametrize(("graph", "name"), [("ids", "model.onnx"), ("text", "model.text.onnx"), ("auto", "model.text.onnx")])
def test_corrupted_model_is_refused_not_worked_around(tiny_bundle, tmp_path, graph, name):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name}: checksum mismatch"):
        Predictor(copy, graph=graph)


@pytest.mark.skipif(HAS_CUDA_PROVIDER, reason="this onnxruntime has the CUDA provider")
def test_cuda_without_provider_says_what_to_install(tiny_bundle):
    with pytest.raises(RnnonnxError, match=r"rnnonnx\[gpu\]"):
        Predictor(tiny_bundle, device="cuda")
    assert Predictor(tiny_bundle, device="auto").providers == ["CPUExecutionProvider"]


def test_silent_cpu_fallback_is_reported(tiny_bundle, monkeypatch):
    """A CUDA provider that is listed but cannot start (no GPU, missing CUDA libraries) makes
    ONNX Runtime fall back to CPU quietly: ``cuda`` must refuse it, ``auto`` must warn."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(RnnonnxError, match="fell back to"):
        Predictor(tiny_bundle, device="cuda")
    with pytest.warns(RuntimeWarning, match="unusable"):
        predictor = Predictor(tiny_bundle, device="auto")
    assert predictor.device == "cpu"


@pytest.mark.skipif(not HAS_CUDA_PROVIDER, reason="needs onnxruntime-gpu (pip install 'rnnonnx[gpu]') and an NVIDIA GPU")
def test_cuda_runs_on_the_cuda_provider(tiny_bundle):
    predictor = Predictor(tiny_bundle, device="cuda")
    assert predictor.providers[0] == "CUDAExecutionProvider" and predictor.device == "cuda"
    cpu = Predictor(tiny_bundle, device="cpu")
    texts = read_builtin().texts[:256]
    assert np.abs(predictor.predict_proba(texts) - cpu.predict_proba(texts)).max() <= 1e-5


def test_bad_options_are_refused(tiny_bundle):
    with pytest.raises(RnnonnxError, match="unknown device"):
        Predictor(tiny_bundle, device="tpu")
    with pytest.raises(RnnonnxError, match="threads"):
        Predictor(tiny_bundle, threads=0)


def test_predictor_never_imports_torch_onnx_or_sklearn(tiny_bundle):
    code = textwrap.dedent(f"""
        import json, sys
        import rnnonnx
        from rnnonnx import Predictor
        p = Predictor({str(tiny_bundle)!r})
        p.predict(["fine film", ""])
        heavy = sorted(m for m in ("torch", "onnx", "sklearn", "scipy", "safetensors") if m in sys.modules)
        print(json.dumps(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_session_config_entries_reach_onnx_runtime(tiny_bundle):
    predictor = Predictor(tiny_bundle, threads=2, session_config={"session.intra_op.allow_spinning": "0"})
    assert predictor.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = Predictor(tiny_bundle, threads=2).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry("session.intra_op.allow_spinning")

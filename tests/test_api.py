"""The Python API mirrors the command line verb for verb, with the same results."""

from __future__ import annotations

import json

import pytest

import rnnonnx
from rnnonnx.errors import RnnonnxError
from rnnonnx.run import Metrics
from tests.conftest import run_cli

TEXTS = ["A gorgeous, moving film.", "Flat, dull and far too long.", ""]


def test_every_cli_verb_has_an_api_function_that_no_submodule_shadows():
    """Importing a submodule sets it as an attribute of the package, so a verb and a module of the
    same name would turn ``rnnonnx.verb`` into a module after first use."""
    import importlib
    import pkgutil
    import types

    from rnnonnx.cli import main

    assert set(main.commands) <= set(rnnonnx.__all__)
    for module in pkgutil.iter_modules(rnnonnx.__path__):
        if module.name not in ("spark",):  # needs the [spark] extra
            importlib.import_module(f"rnnonnx.{module.name}")
    for name in set(rnnonnx.__all__) - {"__version__"}:
        assert callable(getattr(rnnonnx, name)) and not isinstance(getattr(rnnonnx, name), types.ModuleType), name


def test_predict_matches_the_cli_json_field_for_field(tiny_bundle):
    predictions = rnnonnx.predict(tiny_bundle, TEXTS, top_k=-1, device="cpu")
    done = run_cli("predict", str(tiny_bundle), *TEXTS, "--json", "--top-k", "-1", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r.pop("text") for r in records] == TEXTS
    assert records == [p.to_dict() for p in predictions]
    assert set(records[0]) == {"label", "score", "probabilities", "top"}


def test_predict_file_and_evaluate_return_result_objects(tiny_bundle, tiny_run, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:2]) + "\n", encoding="utf-8")
    stats = rnnonnx.predict_file(tiny_bundle, source, tmp_path / "out.csv", device="cpu")
    assert stats.rows == 2 and (tmp_path / "out.csv").read_text().startswith("text,label,score")
    result = rnnonnx.evaluate(tiny_bundle, run_dir=tiny_run, device="cpu")
    assert result.evaluated == 40 and 0.0 <= result.to_dict()["accuracy"] <= 1.0


def test_an_open_predictor_takes_no_opening_options(tiny_bundle):
    predictor = rnnonnx.load(tiny_bundle, device="cpu")
    assert rnnonnx.predict(predictor, TEXTS)[0] == predictor.predict(TEXTS)[0]
    with pytest.raises(TypeError, match="apply when opening a bundle"):
        rnnonnx.predict(predictor, TEXTS, device="cpu")


def test_train_returns_metrics_and_refuses_unknown_options(tmp_path):
    with pytest.raises(RnnonnxError, match="unknown training option"):
        rnnonnx.train(tmp_path / "run", epochz=1)
    assert not (tmp_path / "run").exists()
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(20)), encoding="utf-8")
    metrics = rnnonnx.train(tmp_path / "run", data, epochs=1, members=1, embed_dim=4, hidden=4)
    assert isinstance(metrics, Metrics) and (tmp_path / "run" / "metrics.json").is_file()

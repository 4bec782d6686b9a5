"""The browser client (clients/web) in headless Chromium against the Python predictor: the same
predictions (labels identical, max |difference| <= 1e-5) on 500+ texts, the Python tokenizer's ids at
every Unicode code point, bad bundles refused, and a screenshot of the demo page.

A loopback static server (a thread here) serves the documented layout: ``/web/`` (clients/web with
its node_modules), ``/node/`` (clients/node, for the shared tokenizer module) and ``/bundles/NAME/``.
Needs Debian's ``chromium`` and Node.js (skipped, with the reason, without them) and
``npm ci --prefix clients/web`` (a failure, with the fix, without it).
"""

from __future__ import annotations

import functools
import http.server
import json
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rnnonnx.bundle import Bundle
from rnnonnx.data import read_builtin
from rnnonnx.predictor import Predictor
from rnnonnx.text import Tokenizer, TokenizerSpec
from tests.test_node_client import edge_cases

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "clients" / "web"
RUNNER = Path(__file__).with_name("web_parity.mjs")
LSTM = ROOT / "exported" / "lstm"
TOLERANCE = 1e-5
SETUP_HINT = "run `npm ci --prefix clients/web`"


@pytest.fixture(scope="session")
def browser_tools() -> dict[str, str]:
    """The chromium and node executables, with clients/web's dependencies installed."""
    chromium, node = shutil.which("chromium"), shutil.which("node")
    if chromium is None:
        pytest.skip("Chromium is not installed (no `chromium` on PATH; Debian: apt-get install chromium)")
    if node is None:
        pytest.skip("Node.js is not installed (no `node` on PATH)")
    for package in ("onnxruntime-web", "playwright-core"):
        if not (WEB / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"{WEB / 'node_modules'} lacks {package}: {SETUP_HINT}", pytrace=False)
    return {"chromium": chromium, "node": node}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class _Handler(_QuietHandler):
    """Serves each URL prefix from its own folder (the layout the README documents)."""

    mounts: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in sorted(self.mounts.items(), key=lambda item: -len(item[0])):
            if path.startswith(prefix):
                return str(folder / path[len(prefix) :].lstrip("/"))
        return str(Path(self.directory) / "missing")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """A static file server on 127.0.0.1 (a free port); ``mount(prefix, folder)`` adds folders."""
    mounts = {"/web/": WEB, "/node/": ROOT / "clients" / "node", "/bundles/lstm/": LSTM}
    empty = tmp_path_factory.mktemp("www")
    handler = type("Handler", (_Handler,), {"mounts": mounts})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(empty)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{httpd.server_address[1]}",
            "mount": lambda prefix, folder: mounts.__setitem__(prefix, folder),
        }
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_browser(tools: dict, server: dict, tmp_path: Path, steps: list[dict]) -> list:
    """Run ``steps`` on the demo page in a fresh headless Chromium (tests/web_parity.mjs); their answers."""
    request = {
        "chromium": tools["chromium"],
        "user_data_dir": str(tmp_path / "chromium-profile"),
        "page": f"{server['url']}/web/",
        "steps": steps,
    }
    request_file, response_file = tmp_path / "request.json", tmp_path / "response.json"
    request_file.write_text(json.dumps(request), encoding="ascii")
    done = subprocess.run(
        [tools["node"], str(RUNNER), str(request_file), str(response_file)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"browser run failed ({done.returncode}):\n{done.stderr[-6000:]}"
    return json.loads(response_file.read_text(encoding="utf-8"))["answers"]


def parity_texts() -> list[str]:
    """1,000 built-in sentences, 100 of them in capitals, and the edge cases (empty, emoji, CJK, long...)."""
    sample = random.Random(11).sample(read_builtin().texts, 1000)
    extra = ["", "😀", "日本語のテキストはとても素晴らしい", "MiXeD CaSe ReViEw Of A gReAt FiLm", "wonderful " * 2000]
    return sample + [t.upper() for t in sample[:100]] + edge_cases() + extra


@pytest.mark.slow
def test_browser_predictions_match_python(browser_tools, server, tmp_path):
    """predict(texts, {topK: -1}) in Chromium: the Python predictor's labels, probabilities (<= 1e-5)
    and token ids, against both the ids graph and the bundle's default graph."""
    texts = parity_texts()
    [answer] = run_browser(
        browser_tools,
        server,
        tmp_path,
        [{"mode": "predict", "bundle": "/bundles/lstm/", "texts_json": json.dumps(texts), "top_k": -1}],
    )
    assert answer["graph"] == "ids" and answer["model_file"].endswith("/bundles/lstm/model.onnx")
    tokenizer = Bundle(LSTM).tokenizer
    wrong_ids = [t for t, ids in zip(texts, answer["ids"]) if ids != tokenizer.encode(t)]
    assert wrong_ids == [], f"{len(wrong_ids)} texts tokenized differently, e.g. {wrong_ids[:3]!r}"
    got = answer["predictions"]
    assert len(got) == len(texts) and all(set(p) == {"label", "score", "probabilities", "top"} for p in got)
    for graph in ("ids", "auto"):
        predictor = Predictor(LSTM, device="cpu", threads=1, graph=graph)
        assert answer["labels"] == predictor.labels
        expected = [p.to_dict() for p in predictor.predict(texts, top_k=-1)]
        diff = max(
            abs(g["probabilities"][label] - e["probabilities"][label])
            for g, e in zip(got, expected)
            for label in predictor.labels
        )
        wrong = [(t, g["label"], e["label"]) for t, g, e in zip(texts, got, expected) if g["label"] != e["label"]]
        print(
            f"\nlstm, browser vs Python {predictor.graph} graph: {len(texts)} texts, max |dp| {diff:.3g}, "
            f"browser {answer['seconds']:.2f} s"
        )
        assert wrong == [], f"{len(wrong)} labels differ from the {predictor.graph} graph, e.g. {wrong[:3]!r}"
        assert diff <= TOLERANCE, f"max |dp| {diff:.3g} > {TOLERANCE:g} from the {predictor.graph} graph"
    for g in got:
        assert g["score"] == g["probabilities"][g["label"]] == g["top"][0]["score"] and g["top"][0]["label"] == g["label"]
        assert [t["label"] for t in g["top"]] == sorted(answer["labels"], key=lambda label: -g["probabilities"][label])


@pytest.mark.slow
def test_browser_int8_predictions_match_python(browser_tools, server, tmp_path, tiny_int8_bundle):
    """precision 'int8' runs model.int8.onnx: the Python predictor's int8 labels and probabilities
    (same batching, so the same per-batch activation scales)."""
    texts = parity_texts()[:600]
    server["mount"]("/bundles/int8/", tiny_int8_bundle)
    [answer] = run_browser(
        browser_tools,
        server,
        tmp_path,
        [{"mode": "predict", "bundle": "/bundles/int8/", "precision": "int8", "texts_json": json.dumps(texts), "top_k": None}],
    )
    assert answer["model_file"].endswith("/bundles/int8/model.int8.onnx")
    predictor = Predictor(tiny_int8_bundle, device="cpu", threads=1, graph="ids", precision="int8")
    expected = predictor.predict_proba(texts)
    got = np.array([[p["probabilities"][label] for label in predictor.labels] for p in answer["predictions"]])
    diff = float(np.abs(got - expected).max())
    print(f"\ntiny int8, browser vs Python: {len(texts)} texts, max |dp| {diff:.3g}")
    assert [p["label"] for p in answer["predictions"]] == [predictor.labels[k] for k in expected.argmax(axis=1)]
    assert diff <= TOLERANCE, f"int8: max |dp| {diff:.3g} > {TOLERANCE:g}"


def code_point_tokenizers() -> dict[str, dict | None]:
    """The lstm bundle's own tokenizer (None: the loaded model's), and word and char tokenizers whose
    vocabularies hold every token the wrapped code points give, so that every token has its own id."""
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    tokenizers: dict[str, dict | None] = {"lstm bundle": None}
    for analyzer in ("word", "char"):
        spec = TokenizerSpec(analyzer=analyzer, max_len=8)
        tokens = sorted({tok for cp in code_points for tok in spec.tokens(f"Ab{chr(cp)}Cd")} - {"<pad>", "<unk>"})
        tokenizers[analyzer] = Tokenizer(spec, ["<pad>", "<unk>", *tokens]).to_dict()
    return tokenizers


@pytest.mark.slow
def test_browser_tokenizer_matches_python_at_every_code_point(browser_tools, server, tmp_path):
    """Each code point (U+0000..U+10FFFF but surrogates) as its own text, "Ab" + cp + "Cd": the
    browser's token ids equal the Python tokenizer's, for the bundle's tokenizer and for word and char
    tokenizers in which every distinct token has its own id (so a lowercasing or word-class slip shows)."""
    tokenizers = code_point_tokenizers()
    answers = run_browser(
        browser_tools,
        server,
        tmp_path,
        [
            {
                "mode": "code_points",
                "bundle": "/bundles/lstm/",
                "tokenizers": list(tokenizers.values()),
                "prefix": "Ab",
                "suffix": "Cd",
            }
        ],
    )[0]
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    assert len(code_points) == 1_112_064
    for (name, data), got in zip(tokenizers.items(), answers):
        tokenizer = Bundle(LSTM).tokenizer if data is None else Tokenizer.from_dict(data)
        expected = [tokenizer.encode(f"Ab{chr(cp)}Cd") for cp in code_points]
        lengths = np.array(got["lengths"].split(","), dtype=np.int64)
        ids = np.array(got["ids"].split(","), dtype=np.int64)
        want_lengths = np.array([len(e) for e in expected])
        want_ids = np.array([i for e in expected for i in e], dtype=np.int64)
        if not (np.array_equal(lengths, want_lengths) and np.array_equal(ids, want_ids)):
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            wrong = [
                f"U+{cp:04X}"
                for cp, start, n, want in zip(code_points, starts, lengths, expected)
                if ids[start : start + n].tolist() != want
            ]
            pytest.fail(f"{name}: {len(wrong)} code points give other ids in the browser, e.g. {wrong[:10]}")
        print(f"\n{name}: {len(code_points)} code points, {len(ids)} ids, all equal to Python's")


def test_browser_refuses_corrupted_and_unknown_bundles(browser_tools, server, tmp_path, tiny_bundle):
    """A flipped byte in model.onnx and an unknown format version are refused with the reason."""
    corrupted = shutil.copytree(tiny_bundle, tmp_path / "corrupted")
    model = bytearray((corrupted / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0x01
    (corrupted / "model.onnx").write_bytes(bytes(model))
    future = shutil.copytree(tiny_bundle, tmp_path / "future")
    manifest = json.loads((future / "manifest.json").read_text(encoding="utf-8"))
    (future / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}), encoding="utf-8")
    for name, folder in {"tiny": tiny_bundle, "corrupted": corrupted, "future": future}.items():
        server["mount"](f"/bundles/{name}/", folder)
    answers = run_browser(
        browser_tools,
        server,
        tmp_path,
        [{"mode": "load_error", "bundle": f"/bundles/{name}/"} for name in ("tiny", "corrupted", "future", "absent")],
    )
    errors = [a["error"] for a in answers]
    assert errors[0] is None
    assert "BundleError" in errors[1] and "model.onnx: checksum mismatch with the manifest" in errors[1]
    assert "bundle format version 2 is not supported" in errors[2]
    assert "manifest.json: HTTP 404" in errors[3]


@pytest.fixture
def site(browser_tools, tmp_path) -> Iterator[str]:
    """The folder clients/web/scripts/site.mjs assembles (page, module, tokenizer, onnxruntime-web,
    the lstm bundle), served as it is by Python's plain static file server; its URL."""
    folder = tmp_path / "site"
    done = subprocess.run(
        [browser_tools["node"], str(WEB / "scripts" / "site.mjs"), str(folder), str(LSTM)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # model.onnx reads its weights from model.text.onnx (manifest external_data), so both travel
    assert (folder / "web" / "bundle" / "model.text.onnx").exists()
    assert not (folder / "web" / "bundle" / "model.text.int8.onnx").exists()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_demo_page_shows_the_prediction(browser_tools, site, tmp_path):
    """The demo page, from the assembled site with its default bundle/, shows the Python predictor's
    label and one bar per class for a typed text; its screenshot is written under tmp_path."""
    text = "An absolutely wonderful, moving film: brilliant acting and a gorgeous score."
    screenshot = tmp_path / "demo.png"
    [answer] = run_browser(
        browser_tools, {"url": site}, tmp_path, [{"mode": "demo", "query": "", "text": text, "screenshot": str(screenshot)}]
    )
    expected = Predictor(LSTM, device="cpu", threads=1).predict([text])[0]
    assert answer["state"] == "ready", answer["status"]
    assert answer["label"] == expected.label
    assert [label for label, _ in answer["bars"]] == list(expected.probabilities)
    for label, shown in answer["bars"]:
        assert abs(shown - expected.probabilities[label]) <= 5e-5  # shown with 4 decimals
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\ndemo page screenshot: {screenshot}")


def test_site_refuses_an_existing_folder_and_a_non_bundle(browser_tools, tmp_path):
    script = str(WEB / "scripts" / "site.mjs")
    (tmp_path / "taken").mkdir()
    done = subprocess.run([browser_tools["node"], script, str(tmp_path / "taken"), str(LSTM)], capture_output=True, text=True)
    assert done.returncode == 1 and "already exists" in done.stderr and done.stderr.count("\n") == 1
    done = subprocess.run([browser_tools["node"], script, str(tmp_path / "new"), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1 and "not a bundle directory" in done.stderr and not (tmp_path / "new").exists()


def test_demo_page_reports_a_missing_bundle(browser_tools, server, tmp_path):
    [answer] = run_browser(browser_tools, server, tmp_path, [{"mode": "demo", "query": "?bundle=/bundles/absent/"}])
    assert answer["state"] == "error" and "manifest.json: HTTP 404" in answer["status"]

"""`rnnonnx serve`: the real server in a subprocess on a free loopback port, and the app in-process
for the one failure no request can cause (a model that raises)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rnnonnx.predictor import Predictor
from rnnonnx.server import GOLDEN_TEXT, PREDICT_FIELDS, LoadedModel, ServeSettings, create_app, load_model

from .conftest import ROOT, run_cli

BUNDLE = ROOT / "exported" / "lstm"
HOST = "127.0.0.1"
START_LIMIT_S = 60.0
TEXTS = [
    "What a wonderful, moving film.",
    "Dull, slow and far too long.",
    "",
    "ÉTÉ à Paris: ｆｕｌｌ-width ＡＢＣ",
    "emoji 🎬🍿 and digits 42",
    "a" * 300,
    "Ok.",
    "Not bad at all, actually quite good",
    "lone \ud800 surrogate",
    "nul \x00 inside",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """A `rnnonnx serve` subprocess, ready when constructed; always stopped by ``stop``."""

    def __init__(self, *options: str, bundle: Path = BUNDLE) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "rnnonnx.cli", "serve", str(bundle), "--host", HOST, "--port", str(self.port), *options]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: {self.process.stderr.read()}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server not ready within {START_LIMIT_S} s")

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def predict(self, body: Any) -> tuple[int, Any]:
        status, _, payload = self.request("POST", "/v1/predict", body)
        return status, json.loads(payload)

    def metrics(self) -> dict[str, float]:
        status, headers, payload = self.request("GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        values = {}
        for line in payload.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def wait_for_queue(self, texts: int) -> None:
        """Until /metrics shows ``texts`` waiting (bounded)."""
        deadline = time.monotonic() + 20
        while self.metrics().get("rnnonnx_queue_texts") != texts:
            assert time.monotonic() < deadline, "the request never reached the queue"
            time.sleep(0.05)

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return self.process.returncode, stderr


@pytest.fixture(scope="module")
def server():
    """One server with small limits, for everything that does not stop it."""
    running = Server("--max-texts", "16", "--max-text-chars", "400", "--max-body-bytes", "8192")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reference() -> Predictor:
    return Predictor(BUNDLE)


def in_background(function, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(function(*args)), daemon=True)
    thread.start()
    return thread, out


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for mine, theirs in zip(got, want):
        assert set(mine) == set(theirs)
        assert mine["label"] == theirs["label"]
        assert mine["probabilities"].keys() == theirs["probabilities"].keys()
        for label, value in theirs["probabilities"].items():
            assert abs(mine["probabilities"][label] - value) <= 1e-6
        assert abs(mine["score"] - theirs["score"]) <= 1e-6
        if "top" in theirs:
            assert [entry["label"] for entry in mine["top"]] == [entry["label"] for entry in theirs["top"]]


def test_predictions_equal_the_python_predictor_in_order(server, reference):
    status, body = server.predict({"texts": TEXTS})
    assert status == 200 and list(body) == ["predictions"]
    assert_same(body["predictions"], [p.to_dict() for p in reference.predict(TEXTS)])
    assert all(set(p) == {"label", "score", "probabilities"} for p in body["predictions"])


@pytest.mark.parametrize(
    "options", [{"top_k": 1}, {"top_k": -1}, {"top_k": 5}, {"min_score": 0.99}, {"top_k": 2, "min_score": 0.9}]
)
def test_top_k_and_min_score_as_in_python(server, reference, options):
    status, body = server.predict({"texts": TEXTS, **options})
    assert status == 200
    assert_same(body["predictions"], [p.to_dict() for p in reference.predict(TEXTS, **options)])
    if "top_k" in options:
        assert all(len(p["top"]) == (2 if options["top_k"] != 1 else 1) for p in body["predictions"])
    if options.get("min_score") == 0.99:
        assert any(p["label"] is None for p in body["predictions"])


def test_the_ids_graph_without_batching(reference):
    server = Server("--graph", "ids", "--no-batching", "--threads", "1")
    try:
        model = json.loads(server.request("GET", "/v1/model")[2])
        assert (model["graph"], model["model_file"], model["onnxruntime_threads"], model["serving"]["batching"]) == (
            "ids",
            "model.onnx",
            1,
            False,
        )
        status, body = server.predict({"texts": TEXTS})
        assert status == 200
        assert_same(body["predictions"], [p.to_dict() for p in reference.predict(TEXTS)])
    finally:
        server.stop()


def test_no_texts_no_predictions(server):
    assert server.predict({"texts": []}) == (200, {"predictions": []})


def test_concurrent_requests_each_get_their_own_answer(server, reference):
    texts = [f"{word} film number {i}" for i, word in enumerate(["great", "awful", "fine", "boring"] * 6)]
    threads = [in_background(server.predict, {"texts": [text]}) for text in texts]
    for thread, _ in threads:
        thread.join(timeout=60)
    for text, (_, out) in zip(texts, threads):
        status, body = out[0]
        assert status == 200
        assert_same(body["predictions"], [reference.predict([text])[0].to_dict()])


def test_model_health_readiness_and_openapi(server):
    status, _, payload = server.request("GET", "/v1/model")
    model = json.loads(payload)
    assert status == 200 and model["labels"] == ["neg", "pos"]
    assert (model["graph"], model["precision"], model["model_file"]) == ("text", "fp32", "model.text.onnx")
    assert model["manifest"]["model"]["arch"] == "lstm" and "model.text.onnx" in model["manifest"]["files"]
    assert "token_pattern" not in model["manifest"]["tokenizer"]
    assert {"rnnonnx", "onnxruntime", "numpy", "starlette", "uvicorn"} <= set(model["versions"])
    assert model["serving"]["max_texts"] == 16 and model["serving"]["batching"] is True

    assert server.request("GET", "/healthz")[0] == 200
    status, _, payload = server.request("GET", "/readyz")
    ready = json.loads(payload)
    assert status == 200 and ready["status"] == "ready"
    assert ready["golden"]["text"] == GOLDEN_TEXT and ready["golden"]["max_abs_diff"] <= 1e-5

    status, _, payload = server.request("GET", "/openapi.json")
    document = json.loads(payload)
    assert status == 200 and document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json"}
    assert set(document["components"]["schemas"]["PredictRequest"]["properties"]) == set(PREDICT_FIELDS)
    assert set(document["components"]["schemas"]["Prediction"]["required"]) == {"label", "score", "probabilities"}


def test_metrics_count_requests_texts_batches_and_errors(server):
    before = server.metrics()
    assert server.predict({"texts": TEXTS[:3]})[0] == 200
    assert server.predict({"texts": "not a list"})[0] == 422
    after = server.metrics()

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved('rnnonnx_http_requests_total{path="/v1/predict",status="200"}') == 1
    assert moved('rnnonnx_http_requests_total{path="/v1/predict",status="422"}') == 1
    assert moved("rnnonnx_texts_total") == 3
    assert moved('rnnonnx_errors_total{code="invalid_request"}') == 1
    assert moved("rnnonnx_batch_size_sum") == 3 and moved("rnnonnx_batch_size_count") == 1
    assert moved('rnnonnx_http_request_duration_seconds_count{path="/v1/predict"}') == 2
    assert moved('rnnonnx_http_request_duration_seconds_bucket{le="+Inf",path="/v1/predict"}') == 2
    assert 'rnnonnx_http_requests_total{path="/metrics",status="200"}' in after


ERRORS = [
    ("not UTF-8", b'{"texts": ["caf\xe9"]}', 400, "invalid_utf8"),
    ("not JSON", b'{"texts": [', 400, "invalid_json"),
    ("UTF-16 JSON", json.dumps({"texts": ["a"]}).encode("utf-16"), 400, "invalid_utf8"),
    ("nested thousands deep", b"[" * 3000 + b"]" * 3000, 400, "invalid_json"),
    ("an integer of 5000 digits", b'{"texts": ["a"], "top_k": 1' + b"0" * 5000 + b"}", 400, "invalid_json"),
    ("not an object", b'["a"]', 422, "invalid_request"),
    ("no texts", b'{"top_k": 1}', 422, "invalid_request"),
    ("unknown field", b'{"texts": ["a"], "topk": 1}', 422, "invalid_request"),
    ("texts a string", b'{"texts": "a"}', 422, "invalid_request"),
    ("texts an object", b'{"texts": {"a": 1}}', 422, "invalid_request"),
    ("a text not a string", b'{"texts": ["a", null]}', 422, "invalid_request"),
    ("top_k zero", b'{"texts": ["a"], "top_k": 0}', 422, "invalid_request"),
    ("top_k boolean", b'{"texts": ["a"], "top_k": true}', 422, "invalid_request"),
    ("top_k a string", b'{"texts": ["a"], "top_k": "2"}', 422, "invalid_request"),
    ("top_k fractional", b'{"texts": ["a"], "top_k": 1.5}', 422, "invalid_request"),
    ("min_score above 1", b'{"texts": ["a"], "min_score": 1.5}', 422, "invalid_request"),
    ("too many texts", json.dumps({"texts": ["a"] * 17}).encode(), 413, "too_many_texts"),
    ("a text too long", json.dumps({"texts": ["a", "b" * 401]}).encode(), 413, "text_too_long"),
    ("body too large", json.dumps({"texts": ["c" * 300] * 30}).encode(), 413, "body_too_large"),
]


@pytest.mark.parametrize("case,raw,status,code", ERRORS, ids=[case[0] for case in ERRORS])
def test_bad_requests_get_a_json_4xx(server, case, raw, status, code):
    got, headers, payload = server.request("POST", "/v1/predict", raw=raw)
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(payload)["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in payload.decode()


def test_a_chunked_body_over_the_limit_is_refused(server):
    connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        chunks = (b'{"texts": ["' if i == 0 else b"x" * 1000 for i in range(12))
        connection.request("POST", "/v1/predict", body=chunks, encode_chunked=True, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"]["code"] == "body_too_large"
    finally:
        connection.close()


def test_a_client_gone_mid_body_is_counted_not_an_internal_error(server):
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b'{"texts": [')
    deadline = time.monotonic() + 20
    while server.metrics().get('rnnonnx_errors_total{code="client_disconnected"}') != 1:
        assert time.monotonic() < deadline, "the disconnect was never counted"
        time.sleep(0.05)
    assert 'rnnonnx_errors_total{code="internal"}' not in server.metrics()


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        ("GET", "/v2/predict", 404, "not_found"),
        ("GET", "/v1/predict", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_methods_are_json_errors(server, method, path, status, code):
    got, headers, payload = server.request(method, path)
    assert got == status and headers["content-type"] == "application/json"
    assert json.loads(payload)["error"]["code"] == code


def test_overload_is_503_with_retry_after_not_a_longer_queue():
    server = Server("--max-wait-ms", "20000", "--max-batch", "4", "--max-queue", "4", "--max-texts", "4")
    try:
        held, out = in_background(server.predict, {"texts": ["one", "two", "three"]})
        server.wait_for_queue(3)
        status, headers, payload = server.request("POST", "/v1/predict", {"texts": ["four", "five"]})
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert json.loads(payload)["error"]["code"] == "overloaded"
        assert server.metrics()['rnnonnx_errors_total{code="overloaded"}'] == 1
        assert server.predict({"texts": ["four"]})[0] == 200  # fills the queue to 4 texts: the batch is full and runs
        held.join(timeout=30)
        assert out[0][0] == 200 and len(out[0][1]["predictions"]) == 3
    finally:
        server.stop()


def test_sigterm_answers_the_request_in_flight_then_exits_0(reference):
    server = Server("--max-wait-ms", "3000")
    try:
        in_flight, out = in_background(server.predict, {"texts": ["Still answered during shutdown"]})
        server.wait_for_queue(1)
        server.process.send_signal(signal.SIGTERM)
        in_flight.join(timeout=30)
        code, stderr = server.stop()
    finally:
        server.stop()
    assert out, "the request in flight got no answer"
    status, body = out[0]
    assert status == 200
    assert_same(body["predictions"], [reference.predict(["Still answered during shutdown"])[0].to_dict()])
    assert code == 0 and "Traceback" not in stderr
    with pytest.raises(OSError):
        socket.create_connection((HOST, server.port), timeout=2).close()


def test_a_missing_bundle_is_one_line_and_never_listens():
    port = free_port()
    result = run_cli("serve", str(ROOT / "no-such-bundle"), "--port", str(port))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-bundle" in lines[0] and "not a bundle directory" in lines[0]
    assert "Uvicorn running" not in result.stderr and "Started server" not in result.stderr


def test_a_corrupted_bundle_is_one_line(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    model = bundle / "model.text.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    result = run_cli("serve", str(bundle), "--port", str(free_port()))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "checksum mismatch" in lines[0]


def test_bad_limits_are_one_line():
    result = run_cli("serve", str(BUNDLE), "--max-texts", "100", "--max-queue", "10")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1 and "--max-queue" in result.stderr


SERVER_STACK = ("uvicorn", "starlette", "prometheus_client")


def test_the_server_stack_loads_only_for_serve():
    code = (
        "import sys\nfrom rnnonnx.cli import main\n"
        "for args in (['--help'], ['serve', '--help'], ['predict', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        f"print(sorted(m for m in {SERVER_STACK!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("missing", [*SERVER_STACK, "anyio"])  # anyio: a dependency of Starlette
def test_a_missing_extra_names_it_in_one_line(missing):
    code = (
        f"import sys\nsys.modules[{missing!r}] = None  # as if not installed\n"
        f"from rnnonnx.cli import entry\nsys.argv = ['rnnonnx', 'serve', {str(BUNDLE)!r}]\nentry()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f'Error: {missing} is not installed; the server needs the serve extra: pip install "rnnonnx[serve]"'
    ]


@pytest.mark.slow
def test_several_workers_share_the_port_and_sum_their_metrics(reference):
    server = Server("--workers", "2", "--threads", "1")
    try:
        for text in TEXTS[:6]:
            status, body = server.predict({"texts": [text]})
            assert status == 200
            assert_same(body["predictions"], [reference.predict([text])[0].to_dict()])
        assert server.metrics()["rnnonnx_texts_total"] == 6
        code, stderr = server.stop()
    finally:
        server.stop()
    assert code == 0 and "Traceback" not in stderr
    assert len(set(re.findall(r"Started server process \[(\d+)\]", stderr))) == 2


class Failing:
    """A real predictor whose inference raises, as a broken runtime would."""

    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def predict_proba(self, texts: list[str]) -> Any:
        raise RuntimeError("secret internal detail")


async def asgi_call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request straight into the ASGI app (no network), as uvicorn would make it."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": (HOST, 1234),
        "server": (HOST, 80),
    }
    try:
        await app(scope, receive, send)
    except RuntimeError as exc:  # Starlette answers, then re-raises for the server's log
        assert "secret" in str(exc)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_an_internal_error_is_a_json_500_without_internals():
    settings = ServeSettings(bundle=str(BUNDLE), threads=1)
    real = load_model(settings)
    app = create_app(LoadedModel(Failing(real.predictor), real.golden, real.threads), settings)

    async def main() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        async with app.router.lifespan_context(app):
            failed = await asgi_call(app, "POST", "/v1/predict", b'{"texts": ["a"]}')
            metrics = await asgi_call(app, "GET", "/metrics")
        return failed, metrics

    (status, payload), (_, metrics) = asyncio.run(asyncio.wait_for(main(), 60))
    assert status == 500
    assert json.loads(payload) == {"error": {"code": "internal", "message": "internal server error"}}
    assert b"secret" not in payload and b"Traceback" not in payload
    text = metrics.decode()
    assert 'rnnonnx_errors_total{code="internal"} 1.0' in text
    assert 'rnnonnx_http_requests_total{path="/v1/predict",status="500"} 1.0' in text


def test_settings_reach_workers_unchanged():
    settings = ServeSettings(bundle="b", port=1, workers=3, threads=2, int8=True, batching=False, max_wait_ms=0.5)
    assert ServeSettings.from_json(settings.to_json()) == settings
    assert settings.ort_threads() == 2
    assert ServeSettings(bundle="b", workers=os.cpu_count() * 4).ort_threads() == 1


@pytest.mark.slow
def test_the_load_benchmark_runs_and_reads_batch_sizes():
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "serve_load.py"),
        str(BUNDLE),
        "--requests",
        "40",
        "--concurrency",
        "1,8",
        "--repeats",
        "1",
        "--alone-seconds",
        "0.2",
        "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {(row["mode"], row["concurrency"]): row for row in report["rows"]}
    assert set(rows) == {(mode, c) for mode in ("batching on", "batching off") for c in (1, 8)}
    assert all(row["requests"] == 40 and row["errors"] == 0 and row["requests_per_s"] > 0 for row in rows.values())
    assert rows[("batching off", 8)]["mean_batch"] == 1.0 and rows[("batching on", 8)]["mean_batch"] >= 1.0
    assert report["ort_alone"]["ratio"] > 0


def test_a_multi_label_bundle_serves_label_sets(tiny_multilabel_bundle):
    running = Server(bundle=tiny_multilabel_bundle)
    try:
        texts = ["photo image network http", "the and for"]
        status, body = running.predict({"texts": texts, "top_k": 2})
        want = [p.to_dict() for p in Predictor(tiny_multilabel_bundle).predict(texts, top_k=2)]
        assert status == 200 and body["predictions"][1]["labels"] == [] and body["predictions"][1]["label"] is None
        assert_same(body["predictions"], want)
        assert [p["labels"] for p in body["predictions"]] == [p["labels"] for p in want]
        assert sorted(body["predictions"][0]["labels"]) == ["graphics", "network"]
        status, body = running.predict({"texts": texts, "min_score": 0.0})
        assert [len(p["labels"]) for p in body["predictions"]] == [4, 4]
        model = json.loads(running.request("GET", "/v1/model")[2])
        assert model["task"] == "multi-label" and len(model["thresholds"]) == 4
    finally:
        running.stop()

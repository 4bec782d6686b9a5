"""``rnnonnx serve``: a bundle behind an HTTP API (Starlette on uvicorn), with micro-batching.

Starlette rather than FastAPI: the request checks here are hand-written anyway (a streamed body
limit, strict UTF-8, one JSON error shape for every 4xx), so pydantic's validation would only add
a dependency and per-request cost; the OpenAPI document is written out below and tested against
the routes. The server stack is the ``[serve]`` extra and is imported only inside this module's
functions, so ``import rnnonnx`` and ``rnnonnx --help`` never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from . import __version__
from .batcher import MicroBatcher, Overloaded
from .errors import BundleError, RnnonnxError

SERVE_HINT = 'the server needs the serve extra: pip install "rnnonnx[serve]"'
# What the server imports, submodules included (importing a package alone may not reach its dependencies).
SERVER_MODULES = ("uvicorn", "starlette.applications", "prometheus_client")
# Predicted at start-up (twice: the two must agree) and by every /readyz, which compares it with
# the start-up result: a model that loads but computes garbage, or a stuck inference thread, is not ready.
GOLDEN_TEXT = "A warm, funny and beautifully acted film with a story that stays with you."
GOLDEN_TOLERANCE = 1e-5
READY_TIMEOUT_S = 5.0
SETTINGS_ENV = "RNNONNX_SERVE_SETTINGS"
PREDICT_FIELDS = ("texts", "top_k", "min_score")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# The predictor sorts a micro-batch by length and runs it in groups of this many texts: random
# sentences padded to the longest of 64 waste compute, and 64 mixed built-in sentences took about
# 30% less CPU per text in runs of 16 than in one run of 64 (exported/lstm, fp32).
RUN_SIZE = 16
log = logging.getLogger("uvicorn.error")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``rnnonnx serve`` is told; also passed to worker processes as JSON."""

    bundle: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None
    device: str = "auto"
    graph: str = "auto"
    int8: bool = False
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    max_texts: int = 256
    max_text_chars: int = 10_000
    max_body_bytes: int = 1 << 20
    drain_seconds: float = 30.0
    access_log: bool = False
    log_level: str = "info"

    def check(self) -> None:
        """Reject settings that cannot work, with the option's name."""
        at_least_one = ("workers", "max_batch", "max_queue", "max_texts", "max_text_chars", "max_body_bytes")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise RnnonnxError(f"--{name.replace('_', '-')} must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise RnnonnxError("--threads must be at least 1")
        if not 0 <= self.port <= 65535:
            raise RnnonnxError(f"--port must be between 0 and 65535, not {self.port}")
        if self.max_wait_ms < 0 or self.drain_seconds < 0:
            raise RnnonnxError("--max-wait-ms and --drain-seconds cannot be negative")
        if self.max_texts > self.max_queue:
            raise RnnonnxError(
                f"--max-texts ({self.max_texts}) cannot exceed --max-queue ({self.max_queue}): "
                f"such a request could never be queued"
            )

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp32"

    def ort_threads(self) -> int:
        """Prediction threads per worker (``Predictor(threads=...)``): as asked, else the usable cores shared out."""
        from .machine import usable_cores

        return self.threads or max(1, usable_cores() // self.workers)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        return cls(**json.loads(text))


@dataclass
class LoadedModel:
    """A predictor that passed the start-up check, and the golden probabilities it gave."""

    predictor: Any
    golden: np.ndarray
    threads: int


def require_server_stack() -> None:
    """One line naming the extra when uvicorn, Starlette, prometheus_client or one of their own
    dependencies cannot be imported."""
    import importlib

    for name in SERVER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise RnnonnxError(f"{(exc.name or name).split('.')[0]} is not installed; {SERVE_HINT}") from None


def load_model(settings: ServeSettings) -> LoadedModel:
    """Open the bundle (checksums included) and check that it predicts the golden text
    consistently, before any traffic is accepted."""
    from .predictor import Predictor

    threads = settings.ort_threads()
    predictor = Predictor(
        settings.bundle,
        device=settings.device,
        threads=threads,
        batch_size=RUN_SIZE,
        precision=settings.precision,
        graph=settings.graph,
        # CUDA sessions keep ONNX Runtime's intra-op pool: its idle threads must not spin on the
        # event loop's cores (CPU sessions run single-threaded parts, see Predictor)
        session_config={"session.intra_op.allow_spinning": "0"},
    )
    first = predictor.predict_proba([GOLDEN_TEXT])
    second = predictor.predict_proba([GOLDEN_TEXT])
    n_labels = len(predictor.labels)
    # a multi-label model's probabilities are one sigmoid per label: each in [0, 1], no sum
    sums = predictor.task == "multi-class" and abs(float(first.sum()) - 1.0) > 1e-3
    if first.shape != (1, n_labels) or not np.all(np.isfinite(first)) or sums or not ((first >= 0) & (first <= 1)).all():
        raise BundleError(
            f"{settings.bundle}: the model does not give one probability per label for a test sentence (got {first.tolist()})"
        )
    if float(np.abs(first - second).max()) > GOLDEN_TOLERANCE:
        raise BundleError(
            f"{settings.bundle}: the model gives different probabilities for the same sentence "
            f"({first.tolist()} vs {second.tolist()})"
        )
    return LoadedModel(predictor, first[0], threads)


def server_versions() -> dict[str, str]:
    """Versions of what answers requests (``/v1/model``; benchmark reports)."""
    out = {"rnnonnx": __version__, "python": platform.python_version()}
    for name in ("onnxruntime", "numpy", "starlette", "uvicorn", "prometheus-client"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def model_summary(model: LoadedModel, settings: ServeSettings) -> dict[str, Any]:
    """``GET /v1/model``: labels, what runs (graph, precision, device), the manifest's summary, versions, limits."""
    predictor = model.predictor
    manifest = predictor.bundle.manifest
    tokenizer = {key: value for key, value in manifest.get("tokenizer", {}).items() if key != "token_pattern"}
    return {
        "labels": predictor.labels,
        "task": predictor.task,
        "thresholds": predictor.thresholds,
        "graph": predictor.graph,
        "precision": predictor.precision,
        "model_file": predictor.model_file,
        "device": predictor.device,
        "providers": list(predictor.providers),
        "onnxruntime_threads": model.threads,
        "manifest": {
            "format_version": manifest.get("format_version"),
            "created": manifest.get("created"),
            "model": manifest.get("model", {}),
            "tokenizer": tokenizer,
            "exported_with": manifest.get("versions", {}),
            "files": manifest.get("files", {}),
        },
        "versions": server_versions(),
        "serving": {
            "batching": settings.batching,
            "max_batch": settings.max_batch,
            "max_wait_ms": settings.max_wait_ms,
            "max_queue": settings.max_queue,
            "max_texts": settings.max_texts,
            "max_text_chars": settings.max_text_chars,
            "max_body_bytes": settings.max_body_bytes,
            "workers": settings.workers,
        },
    }


class ApiError(Exception):
    """A request the client must fix (4xx) or that the server refuses for now (503)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def parse_predict_body(body: bytes, settings: ServeSettings) -> tuple[list[str], int | None, float | None]:
    """The texts, ``top_k`` and ``min_score`` of a ``POST /v1/predict`` body, or an :class:`ApiError`
    saying exactly what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits; arrays nested thousands deep
        raise ApiError(400, "invalid_json", f"the body is JSON this server does not read ({str(exc).split(':')[0]})") from None
    if not isinstance(payload, dict):
        raise ApiError(
            422, "invalid_request", f'the body must be a JSON object like {{"texts": ["..."]}}, not {_type_name(payload)}'
        )
    unknown = sorted(set(payload) - set(PREDICT_FIELDS))
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(PREDICT_FIELDS)}",
        )
    if "texts" not in payload:
        raise ApiError(422, "invalid_request", 'missing "texts": a list of strings to classify')
    texts = payload["texts"]
    if not isinstance(texts, list):
        hint = " (put a single text in a list)" if isinstance(texts, str) else ""
        raise ApiError(422, "invalid_request", f'"texts" must be an array of strings, not {_type_name(texts)}{hint}')
    if len(texts) > settings.max_texts:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise ApiError(422, "invalid_request", f"texts[{i}] must be a string, not {_type_name(item)}")
        if len(item) > settings.max_text_chars:
            raise ApiError(413, "text_too_long", f"texts[{i}] has {len(item)} characters; the limit is {settings.max_text_chars}")
    top_k = payload.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or (top_k < 1 and top_k != -1)):
        raise ApiError(422, "invalid_request", f'"top_k" must be a positive integer or -1 (every label), not {json.dumps(top_k)}')
    min_score = payload.get("min_score")
    if min_score is not None and (
        isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1
    ):
        raise ApiError(422, "invalid_request", f'"min_score" must be a number between 0 and 1, not {json.dumps(min_score)}')
    return texts, top_k, min_score


class Metrics:
    """The Prometheus metrics of one worker; with several workers they are summed over all of them
    (prometheus_client's multiprocess mode, files in ``multiprocess_dir``)."""

    def __init__(self, multiprocess_dir: str | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "rnnonnx_http_requests", "HTTP requests answered, by route and status code.", ["path", "status"], registry=reg
        )
        self.latency = Histogram(
            "rnnonnx_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_progress = Gauge(
            "rnnonnx_http_requests_in_progress", "Requests being answered now.", registry=reg, multiprocess_mode="livesum"
        )
        self.errors = Counter(
            "rnnonnx_errors", "Requests answered with an error, by error code (see the JSON error body).", ["code"], registry=reg
        )
        self.texts = Counter("rnnonnx_texts", "Texts classified.", registry=reg)
        self.batch_size = Histogram(
            "rnnonnx_batch_size", "Texts per micro-batch (one predictor call).", buckets=BATCH_BUCKETS, registry=reg
        )
        self.batch_seconds = Histogram(
            "rnnonnx_batch_duration_seconds", "Time to predict one micro-batch.", buckets=LATENCY_BUCKETS, registry=reg
        )
        self.queue = Gauge(
            "rnnonnx_queue_texts", "Texts accepted and waiting for a micro-batch.", registry=reg, multiprocess_mode="livesum"
        )

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_size.observe(texts)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """A stopped worker's live gauges stop counting."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


class MetricsMiddleware:
    """Counts and times every request (pure ASGI, so it costs little), including those that fail."""

    def __init__(self, app: Any, metrics: Metrics, paths: frozenset[str]) -> None:
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = 500
        started = time.perf_counter()

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_status)
        except Exception:  # no response was sent: Starlette's outermost layer answers 500
            self.metrics.errors.labels("internal").inc()
            raise
        finally:
            self.metrics.in_progress.dec()
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


def openapi_document(model: LoadedModel) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API, served at ``/openapi.json``."""
    labels = model.predictor.labels
    error = {"$ref": "#/components/schemas/Error"}
    error_response = lambda what: {"description": what, "content": {"application/json": {"schema": error}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rnnonnx",
            "version": __version__,
            "description": 'Text classification with an rnnonnx bundle. Every error is JSON: {"error": {"code", "message"}}.',
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Classify texts: one prediction per text, in order",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "Predictions",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}},
                        },
                        "400": error_response("The body is not UTF-8 JSON"),
                        "413": error_response("Body, number of texts or a text over the server's limits (see /v1/model serving)"),
                        "422": error_response("Wrong fields or types"),
                        "503": error_response("Overloaded or shutting down: retry after the Retry-After header's seconds"),
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "Labels, graph, precision, manifest summary, versions and limits",
                    "responses": {
                        "200": {
                            "description": "Model description",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {
                        "200": {"description": "Alive", "content": {"application/json": {"schema": {"type": "object"}}}}
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the model is loaded and predicts the start-up test sentence as it did at start-up",
                    "responses": {
                        "200": {"description": "Ready", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "503": {
                            "description": "Not ready (starting, shutting down, or failing)",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format)",
                    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "PredictRequest": {
                    "type": "object",
                    "required": ["texts"],
                    "additionalProperties": False,
                    "properties": {
                        "texts": {"type": "array", "items": {"type": "string"}, "description": "Texts to classify"},
                        "top_k": {
                            "type": ["integer", "null"],
                            "description": "Also list the K most probable labels, best first (-1: every label)",
                        },
                        "min_score": {
                            "type": ["number", "null"],
                            "minimum": 0,
                            "maximum": 1,
                            "description": "Abstain below this probability: label is null when the top score is lower",
                        },
                    },
                },
                "Prediction": {
                    "type": "object",
                    "required": ["label", "score", "probabilities"],
                    "properties": {
                        "label": {"type": ["string", "null"], "enum": [*labels, None]},
                        "score": {"type": "number", "description": "Probability of the top label"},
                        "probabilities": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                            "description": "Every label's probability",
                        },
                        "top": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["label", "score"],
                                "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
                            },
                            "description": "Only when top_k was asked for",
                        },
                        "labels": {
                            "type": "array",
                            "items": {"type": "string", "enum": labels},
                            "description": "Multi-label models only: every label at or above its threshold "
                            "(or min_score), best first",
                        },
                    },
                },
                "PredictResponse": {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {"predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
            }
        },
    }


def create_app(model: LoadedModel, settings: ServeSettings, multiprocess_dir: str | None = None) -> Any:
    """The Starlette application serving ``model``; the micro-batcher lives with its lifespan."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from .predictor import predictions_from_proba

    metrics = Metrics(multiprocess_dir)
    predictor = model.predictor
    labels = predictor.labels
    batcher = MicroBatcher(
        predictor.predict_proba,
        settings.max_batch,
        settings.max_wait_ms / 1000.0,
        settings.max_queue,
        settings.batching,
        on_batch=metrics.observe_batch,
    )
    state = {"draining": False}
    summary = model_summary(model, settings)
    document = openapi_document(model)

    def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        metrics.errors.labels(code).inc()
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "body_too_large", f"the body has {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # counted, not logged as a server fault; nobody reads the answer
            raise ApiError(400, "client_disconnected", "the client closed the connection before sending the whole body") from None
        return b"".join(chunks)

    async def predict(request: Request) -> Response:
        texts, top_k, min_score = parse_predict_body(await read_body(request), settings)
        if not texts:
            return JSONResponse({"predictions": []})
        try:
            proba = await batcher.submit(texts)
        except Overloaded as exc:
            raise ApiError(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        metrics.texts.inc(len(texts))
        predictions = predictions_from_proba(proba, labels, top_k, min_score, predictor.thresholds)
        return JSONResponse({"predictions": [p.to_dict() for p in predictions]})

    async def describe(request: Request) -> Response:
        return JSONResponse(summary)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state["draining"] or not batcher.running:
            return JSONResponse({"status": "not ready", "reason": "starting or shutting down"}, status_code=503)
        try:
            proba = await asyncio.wait_for(batcher.run_alone([GOLDEN_TEXT]), READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return JSONResponse({"status": "not ready", "reason": f"no prediction within {READY_TIMEOUT_S:g} s"}, status_code=503)
        diff = float(np.abs(proba[0] - model.golden).max())
        ready = diff <= GOLDEN_TOLERANCE
        body = {
            "status": "ready" if ready else "not ready",
            "golden": {"text": GOLDEN_TEXT, "label": labels[int(proba[0].argmax())], "max_abs_diff": diff},
        }
        if not ready:
            body["reason"] = "the test sentence's probabilities differ from start-up"
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        metrics.queue.set(batcher.queued_texts)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Counted by MetricsMiddleware; the traceback goes to the server log, never to the client.
        return JSONResponse({"error": {"code": "internal", "message": "internal server error"}}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await batcher.start()
        mode = (
            f"micro-batching up to {settings.max_batch} texts, {settings.max_wait_ms:g} ms"
            if settings.batching
            else "micro-batching off"
        )
        log.info(
            f"rnnonnx {__version__}: {settings.bundle} ({predictor.graph} graph, {predictor.precision}, {model.threads} "
            f"ONNX Runtime thread(s), {predictor.device}); {mode}; queue limit {settings.max_queue} texts"
        )
        try:
            yield
        finally:
            state["draining"] = True
            await batcher.stop()
            metrics.close()

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/v1/model", describe, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    paths = frozenset(route.path for route in routes)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware, metrics=metrics, paths=paths)],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    return app


def worker_app() -> Any:
    """The application of one worker process (``--workers`` > 1): settings from the parent, model loaded here."""
    settings = ServeSettings.from_json(os.environ[SETTINGS_ENV])
    return create_app(load_model(settings), settings, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


@contextlib.contextmanager
def _clean_exit_on_signals() -> Iterator[None]:
    """uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the handlers it found:
    swallowing that second delivery makes a drained shutdown a clean exit (status 0)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(bundle: str, **options: Any) -> None:
    """Load and check ``bundle``, then serve it until SIGTERM or Ctrl-C (in-flight requests are
    answered first). ``options`` are :class:`ServeSettings` fields. Returns when the server has stopped."""
    settings = ServeSettings(bundle=bundle, **options)
    settings.check()
    require_server_stack()
    model = load_model(settings)
    import uvicorn

    common: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(settings.drain_seconds),
        lifespan="on",
        server_header=False,
    )
    with _clean_exit_on_signals():
        if settings.workers == 1:
            uvicorn.run(create_app(model, settings), **common)
            return
        del model  # each worker loads its own copy
        metrics_dir = tempfile.mkdtemp(prefix="rnnonnx-metrics-")
        saved = {name: os.environ.get(name) for name in (SETTINGS_ENV, "PROMETHEUS_MULTIPROC_DIR")}
        os.environ[SETTINGS_ENV] = settings.to_json()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            uvicorn.run("rnnonnx.server:worker_app", factory=True, workers=settings.workers, **common)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(metrics_dir, ignore_errors=True)

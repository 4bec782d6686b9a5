"""Micro-batching for the HTTP server: texts of concurrent requests share one model call.

One ONNX Runtime run on many one-sentence texts costs less than one run per text, so
under load the server gathers what arrives within a few milliseconds (or until a batch is full)
and runs it at once, in a worker thread so the event loop keeps accepting requests meanwhile.
The queue is bounded: past ``max_queue`` waiting texts a request is refused at once
(:class:`Overloaded`, HTTP 503) rather than left to wait behind an ever longer line.

Only the standard library and numpy: the server stack (Starlette, uvicorn) stays in
:mod:`rnnonnx.server`, and this module is tested on its own.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import RnnonnxError


class Overloaded(RnnonnxError):
    """The queue is full (or the batcher is stopping): the request is refused, not queued."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers the texts of concurrent :meth:`submit` calls into batches for ``infer``.

    ``infer(texts) -> probabilities`` runs in one dedicated thread, one call at a time (the
    predictor already spreads one call over its threads; parallel calls would only contend for
    the same cores). Under concurrent load a batch starts when ``max_batch`` texts are waiting
    or when the oldest has waited ``max_wait_s``. Waiting only pays when others are coming, so
    when the previous call carried a single request (one client at a time), the next request
    runs as soon as the model is free: a lone client's latency gets no ``max_wait_s`` added.
    A request's texts always stay in one batch, so a request larger than ``max_batch`` runs alone.
    With ``batching=False`` every request is its own call (the baseline that micro-batching is
    measured against). ``on_batch(texts, seconds)`` is told of every call, for metrics.
    """

    def __init__(
        self,
        infer: Callable[[list[str]], np.ndarray],
        max_batch: int = 64,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        batching: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise RnnonnxError("max_batch and max_queue must be at least 1, and max_wait_s at least 0")
        self.infer = infer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.batching = batching
        self.on_batch = on_batch
        self._pending: collections.deque[_Job] = collections.deque()
        self._queued = 0
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._executor: ThreadPoolExecutor | None = None
        self._lone = False  # the previous call carried a single request

    @property
    def queued_texts(self) -> int:
        """Texts accepted and not yet handed to ``infer``."""
        return self._queued

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` has not finished."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self.running:
            return
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnnonnx-infer")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="rnnonnx-batcher")

    async def stop(self) -> None:
        """Finish every accepted request, then stop; later submissions are refused."""
        if self._task is None:
            return
        self._stopping = True
        self._wake(full=True)
        try:
            await self._task
        finally:
            self._task = None
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def submit(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities for ``texts`` (one row each, in order), from a shared batch.

        Raises :class:`Overloaded` when accepting them would put more than ``max_queue`` texts in
        line, or when the batcher is not running; whatever ``infer`` raises reaches the caller.
        """
        if not self.running or self._stopping:
            raise Overloaded("the server is not accepting predictions (starting or shutting down)")
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        if self._queued and self._queued + len(texts) > self.max_queue:
            raise Overloaded(f"too many texts waiting ({self._queued} queued, limit {self.max_queue}); retry shortly")
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued += len(texts)
        self._wake(full=self._queued >= self.max_batch or not self.batching)
        return await job.future

    async def run_alone(self, texts: Sequence[str]) -> np.ndarray:
        """``infer(texts)`` as a call of its own on the inference thread, outside any batch: for a
        health check whose result must not depend on what else is in the batch (int8 models
        quantize activations per batch). It waits for the call in progress, not for the queue."""
        if not self.running:
            raise Overloaded("the server is not accepting predictions (starting or shutting down)")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.infer, list(texts))

    def _wake(self, full: bool) -> None:
        if self._arrived is not None:
            self._arrived.set()
            if full:
                self._full.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            if self.batching and not self._stopping and not self._lone and self._queued < self.max_batch:
                remaining = self._pending[0].enqueued + self.max_wait_s - time.perf_counter()
                if remaining > 0:
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), remaining)
                    except asyncio.TimeoutError:
                        pass
            jobs = self._take()
            if not jobs:
                continue
            self._lone = len(jobs) == 1
            texts = [text for job in jobs for text in job.texts]
            started = time.perf_counter()
            try:
                proba = await loop.run_in_executor(self._executor, self.infer, texts)
                if self.on_batch is not None:
                    self.on_batch(len(texts), time.perf_counter() - started)
            except Exception as exc:  # the callers' requests fail; the loop serves the next batch
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():  # a caller that gave up (client gone) is skipped
                    job.future.set_result(proba[start : start + len(job.texts)])
                start += len(job.texts)

    def _take(self) -> list[_Job]:
        """The next batch: whole jobs in arrival order, up to ``max_batch`` texts (at least one job)."""
        jobs: list[_Job] = []
        count = 0
        while self._pending:
            job = self._pending[0]
            if job.future.done():
                self._pending.popleft()
                self._queued -= len(job.texts)
                continue
            if jobs and (not self.batching or count + len(job.texts) > self.max_batch):
                break
            self._pending.popleft()
            self._queued -= len(job.texts)
            jobs.append(job)
            count += len(job.texts)
        return jobs

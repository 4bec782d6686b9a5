"""The micro-batcher on its own: batches, limits, overload, failures, shutdown (a recording fake model)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from rnnonnx.batcher import MicroBatcher, Overloaded
from rnnonnx.errors import RnnonnxError

LIMIT_S = 10.0


class Recorder:
    """A model whose row for a text is (its length, its first character's code): checkable, and
    each call's texts and thread are recorded."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def expected(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def run(coroutine) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, LIMIT_S))


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.2)
        await batcher.start()
        jobs = [["a" * (i + 1), "b" * (i + 2)] for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs))
        await batcher.stop()
        return jobs, results

    jobs, results = run(main())
    assert len(model.calls) == 1 and len(model.calls[0]) == 20
    for job, result in zip(jobs, results):
        np.testing.assert_array_equal(result, expected(job))
    assert all(name.startswith("rnnonnx-infer") for name in model.threads)


def test_a_full_batch_starts_without_waiting_and_requests_stay_whole():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=LIMIT_S * 2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["x1"]))
        await asyncio.sleep(0.1)
        assert not model.calls  # waiting for more texts: max_wait is long
        rest = [batcher.submit(["y1", "y2"]), batcher.submit(["z1"])]
        await asyncio.gather(first, *rest)  # 4 texts: the batch is full and goes at once
        big = await batcher.submit(["w1", "w2", "w3", "w4", "w5", "w6"])  # over max_batch: runs alone
        await batcher.stop()
        return big

    big = run(main())
    assert model.calls[0] == ["x1", "y1", "y2", "z1"]
    assert model.calls[1] == ["w1", "w2", "w3", "w4", "w5", "w6"]
    np.testing.assert_array_equal(big, expected(["w1", "w2", "w3", "w4", "w5", "w6"]))


def test_a_lone_client_is_not_kept_waiting_but_concurrent_ones_are():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=1.0)
        await batcher.start()
        await batcher.submit(["alone"])  # a fresh batcher waits for company: it may be under load
        started = time.perf_counter()
        await batcher.submit(["still alone"])  # the previous call carried one request: no waiting
        lone_seconds = time.perf_counter() - started
        await asyncio.gather(batcher.submit(["c"]), batcher.submit(["d"]))  # two requests in one call
        waiting = asyncio.ensure_future(batcher.submit(["e"]))  # under load again: e waits for company
        await asyncio.sleep(0.2)
        calls_while_waiting = len(model.calls)
        await batcher.stop()
        await waiting
        return lone_seconds, calls_while_waiting

    lone_seconds, calls_while_waiting = run(main())
    assert lone_seconds < 0.5
    assert model.calls[:3] == [["alone"], ["still alone"], ["c", "d"]] and calls_while_waiting == 3
    assert model.calls[3] == ["e"]


def test_batches_never_split_a_request_or_exceed_max_batch():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=5, max_wait_s=0.05)
        await batcher.start()
        jobs = [[f"{chr(97 + i)}{j}" for j in range(1 + i % 3)] for i in range(12)]
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs))
        await batcher.stop()
        return jobs, results

    jobs, results = run(main())
    assert all(len(call) <= 5 for call in model.calls)
    assert [text for call in model.calls for text in call] == [text for job in jobs for text in job]
    for job, result in zip(jobs, results):
        np.testing.assert_array_equal(result, expected(job))
        assert any(call[i : i + len(job)] == job for call in model.calls for i in range(len(call)))


def test_batching_off_is_one_call_per_request():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.2, batching=False)
        await batcher.start()
        await asyncio.gather(*(batcher.submit([f"t{i}", f"u{i}"]) for i in range(6)))
        await batcher.stop()

    run(main())
    assert sorted(model.calls) == sorted([[f"t{i}", f"u{i}"] for i in range(6)])


def test_a_full_queue_refuses_at_once():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.5, max_queue=3)
        await batcher.start()
        held = asyncio.ensure_future(batcher.submit(["a", "b"]))
        await asyncio.sleep(0)
        assert batcher.queued_texts == 2
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(["c", "d"])
        assert refused.value.retry_after >= 1
        fits = await batcher.submit(["e"])  # 3 texts in line is within the limit
        await held
        await batcher.stop()
        return fits

    np.testing.assert_array_equal(run(main()), expected(["e"]))
    assert model.calls == [["a", "b", "e"]]


def test_a_model_error_fails_that_batch_only():
    model = Recorder(fail_on="boom")

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.05)
        await batcher.start()
        failed = await asyncio.gather(batcher.submit(["boom"]), batcher.submit(["ok"]), return_exceptions=True)
        after = await batcher.submit(["fine"])
        await batcher.stop()
        return failed, after

    failed, after = run(main())
    assert all(isinstance(result, RuntimeError) for result in failed)
    np.testing.assert_array_equal(after, expected(["fine"]))


def test_a_failing_metrics_callback_does_not_stop_the_loop():
    model = Recorder()
    seen: list[int] = []

    def on_batch(texts: int, seconds: float) -> None:
        seen.append(texts)
        if len(seen) == 1:
            raise ValueError("metrics backend failed")

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.01, on_batch=on_batch)
        await batcher.start()
        with pytest.raises(ValueError):
            await batcher.submit(["first"])
        after = await batcher.submit(["second"])
        await batcher.stop()
        return after

    np.testing.assert_array_equal(run(main()), expected(["second"]))
    assert seen == [1, 1]


def test_stop_answers_accepted_requests_then_refuses():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=LIMIT_S * 2)
        await batcher.start()
        waiting = asyncio.ensure_future(batcher.submit(["late"]))
        await asyncio.sleep(0.05)
        await batcher.stop()  # does not wait out max_wait: the queued text runs now
        result = await waiting
        with pytest.raises(Overloaded):
            await batcher.submit(["after"])
        return result

    np.testing.assert_array_equal(run(main()), expected(["late"]))


def test_a_caller_that_gives_up_is_skipped():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.2)
        await batcher.start()
        gone = asyncio.ensure_future(batcher.submit(["gone"]))
        stays = asyncio.ensure_future(batcher.submit(["stays"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        result = await stays
        await batcher.stop()
        assert batcher.queued_texts == 0
        return result

    np.testing.assert_array_equal(run(main()), expected(["stays"]))
    assert model.calls == [["stays"]]


def test_run_alone_bypasses_the_queue():
    model = Recorder()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=LIMIT_S * 2)
        await batcher.start()
        queued = asyncio.ensure_future(batcher.submit(["queued"]))
        await asyncio.sleep(0.01)
        alone = await batcher.run_alone(["alone"])
        assert model.calls == [["alone"]]
        await batcher.stop()
        await queued
        return alone

    np.testing.assert_array_equal(run(main()), expected(["alone"]))


def test_bad_settings_and_a_stopped_batcher_are_errors():
    with pytest.raises(RnnonnxError):
        MicroBatcher(Recorder(), max_batch=0)
    with pytest.raises(Overloaded):
        run(MicroBatcher(Recorder()).submit(["not started"]))

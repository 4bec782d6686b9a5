"""Ensemble members fitted side by side in worker processes, one per core.

A worker fits one member (:func:`rnnonnx.fitting.fit_member`) from files the run writes
(safetensors and JSON) and writes the member back. It never re-runs the caller's script (as
multiprocessing's spawn would), and a member is the same, to the bit, whichever way it was
trained with the same thread count.

A fresh interpreter spends about 5 s of CPU importing torch and the modules an optimizer loads
on its first use. Three such workers on two cores kept a run waiting about 8 s before the first
step, and as long again for a refit: a fifth of a run on a few hundred texts. On Linux a
:class:`MemberPool` therefore starts one helper process when the run starts, which imports all
that once while the run reads and tokenizes its data, then forks each worker from itself in
milliseconds. It forks from its only thread, before any tensor operation has run. Elsewhere
(macOS, whose system libraries are not safe to use in a forked child that has not exec'd) each
worker is a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import torch

from .config import ModelConfig, TrainConfig
from .errors import RnnonnxError
from .fitting import FitJob, MemberFit, fit_member
from .machine import usable_cores

DATA_FILE = "data.safetensors"
JOB_FILE = "job.json"
FORKS = sys.platform.startswith("linux")
T = TypeVar("T")


def worker_count(members: int, cores: int) -> int:
    """Worker processes for ``members`` on ``cores``: one per core, or, when the members outnumber
    the cores by less than two to one, all of them at once sharing the cores (three members on two
    cores take about 1.5 member-times that way, against 2 for two rounds of which the second
    leaves a core idle)."""
    return members if members < 2 * cores else cores


class MemberPool:
    """Starts member workers and tells how each ended (see the module docstring). On Linux its
    helper process lives until :meth:`close`, so a run's fit and refit share it."""

    def __init__(self) -> None:
        self._helper: subprocess.Popen | None = None
        self._fresh: dict[tuple[Path, int], subprocess.Popen] = {}
        if FORKS:
            # numpy's BLAS would otherwise start a pool thread at import: the helper forks from one thread
            env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}
            command = [sys.executable, "-m", "rnnonnx.workers", "--helper"]
            self._helper = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)

    def start(self, work: Path, member: int) -> None:
        """Start fitting ``member`` from the job in ``work``."""
        if self._helper is None:
            command = [sys.executable, "-m", "rnnonnx.workers", str(work), str(member)]
            self._fresh[(work, member)] = subprocess.Popen(command)
            return
        assert self._helper.stdin is not None
        try:
            self._helper.stdin.write(f"{member} {work}\n".encode())
            self._helper.stdin.flush()
        except BrokenPipeError:
            pass  # the helper is gone: exit_status reports its status for this member

    def exit_status(self, work: Path, member: int) -> int | None:
        """The worker's exit status, or None while it runs."""
        if self._helper is None:
            return self._fresh[(work, member)].poll()
        done = work / f"member{member}.exit"
        if done.exists():
            return int(done.read_text(encoding="utf-8"))
        ended = self._helper.poll()  # the helper is gone before this worker ended: a failure
        return None if ended is None else ended or 1

    def close(self) -> None:
        """Stop every worker still running, and the helper."""
        for proc in self._fresh.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._helper is not None and self._helper.poll() is None:
            assert self._helper.stdin is not None
            try:
                self._helper.stdin.close()  # the helper stops its workers and exits
                self._helper.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._helper.kill()
                self._helper.wait()


@contextmanager
def member_pool(members: int, device: torch.device, searching: bool = False) -> Iterator[MemberPool | None]:
    """The pool for a run's member fits, started now (so that its helper's imports overlap the
    run's preparation) when they will use workers: on the CPU, with more than one worker for
    ``members``, or ``searching`` (an autotune search may choose several); else None."""
    cores = usable_cores()
    wanted = device.type == "cpu" and cores > 1 and (searching or worker_count(members, cores) > 1)
    pool = MemberPool() if wanted else None
    try:
        yield pool
    finally:
        if pool is not None:
            pool.close()


def fit_members(job: FitJob, device: torch.device, beside: Callable[[], T] = lambda: None) -> tuple[list[MemberFit], T]:
    """Every member: here, one after another (a single member, or a GPU), or on the CPU in worker
    processes (see :func:`worker_count`), from ``job.pool`` or a pool of this call's own; and what
    ``beside()`` returns. With workers, this process runs ``beside`` on one thread while they train
    (the linear member's fit: cores it would otherwise leave idle at the end of the members' fit
    and while it fits alone); without, after the members."""
    count = job.model.members
    cores = usable_cores()
    workers = worker_count(count, cores) if device.type == "cpu" else 1
    if workers == 1:
        fits = [fit_member(job, k, device) for k in range(count)]
        return fits, beside()
    pool = job.pool if job.pool is not None else MemberPool()
    try:
        with tempfile.TemporaryDirectory(prefix="rnnonnx-members-") as tmp:
            work = Path(tmp)
            _write_job(work, job, threads=max(1, cores // workers))
            waiting, running = list(range(count)), set()
            done = False
            try:
                while waiting or running or not done:
                    while waiting and len(running) < workers:
                        k = waiting.pop(0)
                        pool.start(work, k)
                        running.add(k)
                    if not done:
                        with _one_thread():
                            result = beside()
                        done = True
                    for k in sorted(running):
                        status = pool.exit_status(work, k)
                        if status is not None:
                            running.discard(k)
                            if status != 0:
                                raise RnnonnxError(f"training member {k + 1} of {count} failed (worker exit status {status})")
                    time.sleep(0.05)
            except BaseException:
                pool.close()  # an error or Ctrl-C: stop the other members now
                raise
            return [_read_member(work, k) for k in range(count)], result
    finally:
        if job.pool is None:
            pool.close()


@contextmanager
def _one_thread() -> Iterator[None]:
    """This process on one thread, then on as many as before. (The linear member's fit, the work a
    run does there, gives the same weights on one thread as on several: ``tests/test_linear.py``.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _write_job(work: Path, job: FitJob, threads: int) -> None:
    from safetensors.torch import save_file

    tensors = {"train_ids": job.train_ids, "train_y": job.train_y, "val_ids": job.val_ids, "val_y": job.val_y}
    if job.vector_rows is not None:
        tensors |= {"vector_rows": job.vector_rows, "vector_values": job.vector_values}
    save_file({k: v.clone() for k, v in tensors.items()}, str(work / DATA_FILE))
    record = {
        "model": job.model.to_dict(),
        "training": job.training.to_dict(),
        "progress": job.progress,
        "threads": threads,
        "class_weights": job.class_weights,
        "refit_epochs": job.refit_epochs,
    }
    (work / JOB_FILE).write_text(json.dumps(record), encoding="utf-8")


def _read_job(work: Path) -> tuple[FitJob, int]:
    from safetensors.torch import load_file

    record = json.loads((work / JOB_FILE).read_text(encoding="utf-8"))
    data = load_file(str(work / DATA_FILE))
    job = FitJob(
        ModelConfig(**record["model"]),
        TrainConfig(**record["training"]),
        data["train_ids"],
        data["train_y"],
        data["val_ids"],
        data["val_y"],
        record["progress"],
        record["class_weights"],
        data.get("vector_rows"),
        data.get("vector_values"),
        record.get("refit_epochs"),
    )
    return job, record["threads"]


def _read_member(work: Path, member: int) -> MemberFit:
    from safetensors.torch import load_file

    record = json.loads((work / f"member{member}.json").read_text(encoding="utf-8"))
    return MemberFit(
        record["seed"], load_file(str(work / f"member{member}.safetensors")), record["history"], record["best_epoch"]
    )


def exit_with_parent() -> None:
    """Stop this worker as soon as its parent is gone (killed before it could stop its workers)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def member_worker(work: Path, member: int) -> None:
    """A worker: fit one member from the files :func:`fit_members` wrote, write it back."""
    from safetensors.torch import save_file

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    exit_with_parent()
    job, threads = _read_job(work)
    torch.set_num_threads(threads)
    fit = fit_member(job, member, torch.device("cpu"), live=False)
    save_file({k: v.contiguous() for k, v in fit.state.items()}, str(work / f"member{member}.safetensors"))
    record = {"seed": fit.seed, "history": fit.history, "best_epoch": fit.best_epoch}
    (work / f"member{member}.json").write_text(json.dumps(record), encoding="utf-8")


def serve_forks() -> None:
    """The helper of a :class:`MemberPool`: load what a worker needs, then for each line
    ``MEMBER WORK`` on its input fork a worker, and write each worker's exit status to
    ``WORK/memberMEMBER.exit`` when it ends. At the end of its input (the pool was closed, or the
    run is gone and with it the pipe's other end) it stops the workers still running and exits."""
    from .optimizer import adam

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle
    adam([torch.nn.Parameter(torch.zeros(1))], 1e-3, torch.device("cpu"))  # the modules a first optimizer loads
    running, pending, reading = {}, b"", True
    while reading:
        if select.select([0], [], [], 0.05)[0]:
            chunk = os.read(0, 4096)
            reading, pending = bool(chunk), pending + chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                member, work = line.decode().split(" ", 1)
                pid = os.fork()
                if pid == 0:
                    _forked_worker(Path(work), int(member))
                running[pid] = Path(work) / f"member{member}.exit"
        _reap(running)
    for pid in running:
        os.kill(pid, signal.SIGKILL)
    for pid in running:
        os.waitpid(pid, 0)


def _reap(running: dict[int, Path]) -> None:
    """Record the exit status of every worker that has ended (written whole, then renamed)."""
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        done = running.pop(pid)
        partial = done.with_suffix(".partial")
        partial.write_text(str(os.waitstatus_to_exitcode(status)), encoding="utf-8")
        os.replace(partial, done)


def _forked_worker(work: Path, member: int) -> NoReturn:
    """A forked worker's whole life: fit the member, then exit without the helper's cleanup."""
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the helper's requests are not for it
        member_worker(work, member)
        code = 0
    except RnnonnxError as exc:
        print(f"Error: {exc}", file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:] == ["--helper"]:
        serve_forks()
        sys.exit(0)
    try:
        member_worker(Path(sys.argv[1]), int(sys.argv[2]))
    except RnnonnxError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)

"""Worker processes: members fitted side by side, forked from one helper on Linux, the same to the bit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnonnx import fitting, workers
from rnnonnx.config import TrainConfig
from rnnonnx.errors import RnnonnxError
from rnnonnx.training import train_run
from tests.conftest import alive, children, member_job, small_sample

SMALL = dict(embed_dim=8, hidden=8, members=1)
LINUX = pytest.mark.skipif(not workers.FORKS, reason="the helper forks workers on Linux only")


@pytest.mark.parametrize("forks", [pytest.param(True, marks=LINUX), False], ids=["forked", "fresh"])
def test_members_trained_in_worker_processes_equal_members_trained_here(monkeypatch, forks):
    config = TrainConfig(epochs=2, batch_size=16, patience=5, **SMALL)
    job = member_job(config)
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)  # two workers, one thread each, even on one core
    monkeypatch.setattr(workers, "FORKS", forks)
    fits, _ = workers.fit_members(job, torch.device("cpu"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here = [fitting.fit_member(job, k, torch.device("cpu")) for k in range(2)]
    finally:
        torch.set_num_threads(threads)
    assert [f.seed for f in fits] == [0, 1000] and [f.best_epoch for f in fits] == [h.best_epoch for h in here]
    for fit, ref in zip(fits, here):
        assert fit.history == ref.history and all(torch.equal(fit.state[k], ref.state[k]) for k in ref.state)
    assert not torch.equal(fits[0].state["embedding.weight"], fits[1].state["embedding.weight"])


@pytest.mark.parametrize("cores", [2, 1])
def test_work_beside_the_members_runs_here_on_one_thread_while_they_train(monkeypatch, tmp_path, cores):
    """With workers, ``beside`` runs while they train (neither has written its member when it
    starts), on one thread, and the thread count comes back after; without (one core), after the
    members, on the run's threads. Its result comes back with the members."""
    monkeypatch.setattr(workers, "usable_cores", lambda: cores)
    monkeypatch.setattr(workers.tempfile, "tempdir", str(tmp_path))  # the job's folder, where members are written
    job = member_job(TrainConfig(epochs=30, patience=30, batch_size=16, **SMALL), n=600)
    threads = torch.get_num_threads()
    seen = []

    def beside() -> str:
        written = [p.name for p in tmp_path.glob("rnnonnx-members-*/member*.safetensors")]
        seen.append((torch.get_num_threads(), [p.name for p in tmp_path.glob("rnnonnx-members-*")], written))
        return "linear"

    fits, result = workers.fit_members(job, torch.device("cpu"), beside)
    assert result == "linear" and len(fits) == 2 and torch.get_num_threads() == threads
    [(beside_threads, folders, written)] = seen
    assert (beside_threads, len(folders), written) == ((1, 1, []) if cores == 2 else (threads, 0, []))


def test_members_share_the_cores_when_they_outnumber_them_by_less_than_two_to_one():
    assert [workers.worker_count(m, 2) for m in (1, 2, 3, 4, 5, 16)] == [1, 2, 3, 2, 2, 2]
    assert [workers.worker_count(m, 1) for m in (1, 3)] == [1, 1] and workers.worker_count(3, 8) == 3


def test_a_worker_that_cannot_start_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    monkeypatch.setattr(workers.sys, "executable", "false")
    with pytest.raises(RnnonnxError, match="training member 1 of 2 failed"):
        workers.fit_members(member_job(TrainConfig(epochs=1)), torch.device("cpu"))


@LINUX
def test_a_forked_worker_that_fails_is_a_clear_error_with_its_reason(monkeypatch, capfd):
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    job = member_job(TrainConfig(epochs=1, batch_size=16, **SMALL))
    job.class_weights = [1.0, 1.0, 1.0]  # three class weights for two classes: the loss fails in every member
    with pytest.raises(RnnonnxError, match=r"training member \d of 2 failed \(worker exit status 1\)"):
        workers.fit_members(job, torch.device("cpu"))
    err = capfd.readouterr().err
    assert "Traceback" in err and "weight" in err


def _wait_until_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    return not alive(pid)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc (Linux)")
def test_member_worker_stops_when_its_parent_is_killed():
    child = (
        "import time; from rnnonnx.workers import exit_with_parent; exit_with_parent(); "
        "print('ready', flush=True); time.sleep(120)"
    )
    parent = (
        f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}], "
        f"stdout=subprocess.PIPE, stderr=subprocess.DEVNULL); "
        "p.stdout.readline(); print(p.pid, flush=True)"
    )
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120)
    pid = int(done.stdout.strip())
    if not _wait_until_gone(pid):
        os.kill(pid, 9)
        pytest.fail("the worker outlived its parent")


@LINUX
def test_closing_the_pool_stops_its_running_worker_and_its_helper(tmp_path):
    job = member_job(TrainConfig(epochs=500, patience=500, batch_size=16, **SMALL), n=2000)
    workers._write_job(tmp_path, job, threads=1)
    pool = workers.MemberPool()
    helper = pool._helper
    assert helper is not None
    pool.start(tmp_path, 0)
    deadline = time.time() + 60
    while not children(helper.pid) and time.time() < deadline:
        time.sleep(0.05)
    [worker] = children(helper.pid)
    assert pool.exit_status(tmp_path, 0) is None
    pool.close()
    assert helper.returncode == 0 and _wait_until_gone(worker, 5)
    assert not (tmp_path / "member0.safetensors").exists()


@LINUX
def test_the_helper_and_its_worker_stop_when_the_run_is_killed(tmp_path):
    job = member_job(TrainConfig(epochs=500, patience=500, batch_size=16, **SMALL), n=2000)
    workers._write_job(tmp_path, job, threads=1)
    run = (
        "import sys, time; from pathlib import Path; from rnnonnx.workers import MemberPool; "
        f"pool = MemberPool(); pool.start(Path({str(tmp_path)!r}), 0); "
        "print(pool._helper.pid, flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", run], stdout=subprocess.PIPE, text=True)
    try:
        helper = int(proc.stdout.readline())
        deadline = time.time() + 60
        while not children(helper) and time.time() < deadline:
            time.sleep(0.05)
        [worker] = children(helper)
    finally:
        proc.kill()
        proc.wait()
    assert _wait_until_gone(helper) and _wait_until_gone(worker)


@LINUX
def test_a_run_starts_one_helper_for_its_fit_and_its_refit(monkeypatch, tmp_path):
    started = []
    original = workers.MemberPool.__init__

    def counted(self: workers.MemberPool) -> None:
        original(self)
        started.append(self._helper)

    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    monkeypatch.setattr(workers.MemberPool, "__init__", counted)
    config = TrainConfig(epochs=2, refit=True, max_len=20, embed_dim=8, hidden=8, members=2, linear_weight=0)
    metrics = train_run(config, tmp_path / "run", small_sample(200), progress=False)
    assert metrics.refit is not None and len(started) == 1
    assert started[0].returncode == 0  # closed at the end of the run
    assert Path(tmp_path / "run" / "model.safetensors").exists()

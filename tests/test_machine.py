"""Machine facts used by training workers and benchmarks."""

from __future__ import annotations

import os

from rnnonnx.machine import cpu_name, machine, usable_cores


def test_usable_cores_follow_the_affinity_mask():
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores() == len(os.sched_getaffinity(0))


def test_machine_record_names_the_cpu():
    info = machine()
    assert info["cpu"] == cpu_name() and info["cpu"] and info["usable_cores"] == usable_cores()

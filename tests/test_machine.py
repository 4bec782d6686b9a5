"""Machine facts used by training workers and benchmarks."""

from __future__ import annotations

import os

from rnnonnx.machine import _generation, _has_int8_dot, cpu_name, machine, usable_cores


def test_usable_cores_follow_the_affinity_mask():
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores() == len(os.sched_getaffinity(0))


def test_machine_record_names_the_cpu():
    info = machine()
    assert info["cpu"] == cpu_name() and info["cpu"] and info["usable_cores"] == usable_cores()


def test_cpu_generation_tells_alike_names_apart():
    zen3 = {"model name": "AMD EPYC", "cpu family": "25", "model": "1", "flags": "fpu avx2 fma"}
    zen4 = {"model name": "AMD EPYC", "cpu family": "25", "model": "17", "flags": "avx2 avx512f avx512_vnni"}
    assert _generation(zen3) == " (family 25 model 1; AVX2)"
    assert _generation(zen4) == " (family 25 model 17; AVX-512, VNNI)"
    assert _generation({"model name": "Apple M2"}) == ""


def test_int8_dot_products_from_the_cpu_flags():
    assert _has_int8_dot({"avx2", "avx512f", "avx512_vnni"}) and _has_int8_dot({"avx_vnni"})
    assert _has_int8_dot({"fp", "asimd", "asimddp"})  # Arm's dot product
    assert not _has_int8_dot({"avx2", "fma", "avx512f"})
    assert machine()["int8_dot_product"] in (True, False, None)

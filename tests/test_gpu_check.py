"""scripts/gpu_check.py: the device parity matrix, run on the CPU here so the script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def run_check(device: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_check.py"),
            "--device",
            device,
            "--size",
            "8",
            "--seconds",
            "0.01",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_matrix_on_cpu():
    result = run_check("cpu")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 12 and all(r["max_abs_diff"] <= 1e-5 and r["ort_texts_per_s"] > 0 for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU, a CUDA build of torch and onnxruntime-gpu")
def test_matrix_on_cuda():
    result = run_check("cuda")
    assert result.returncode == 0, result.stderr
    assert all(r["max_abs_diff"] <= 1e-5 for r in json.loads(result.stdout))

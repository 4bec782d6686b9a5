#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: set up a venv with a CUDA torch and onnxruntime-gpu, run the
# parity matrix PyTorch-on-CUDA vs ORT's CUDA execution provider, print max |dp| and throughput.
# TORCH_SPEC picks the torch build (default: PyPI's torch 2.13.0, a CUDA build on Linux x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-/tmp/rnnonnx-gpu}
python3 -m venv "$venv"
"$venv/bin/pip" install -q "${TORCH_SPEC:-torch==2.13.0}" -e ".[train,gpu]"
# pip cannot swap onnxruntime for onnxruntime-gpu: remove the CPU build, then restore the GPU one's files.
"$venv/bin/pip" uninstall -q -y onnxruntime
"$venv/bin/pip" install -q --force-reinstall --no-deps "onnxruntime-gpu==1.30.0"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$venv/bin/python" scripts/gpu_check.py --device cuda "$@"

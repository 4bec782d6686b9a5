#!/usr/bin/env bash
# Reproduce benchmarks/AVX2.md: the default model's int8 twin against fp32 on this CPU's own
# ONNX Runtime kernels and on the AVX2 kernels that CPUs without int8 dot products (VNNI) run,
# through a copy of onnxruntime made to take them (benchmarks/avx2_kernels.py). Meant for a CPU
# with VNNI; on one without, both halves run the same kernels. Run it on an otherwise idle machine.
#
#   PYTHON=.venv/bin/python benchmarks/run_avx2_bench.sh
#
# Environment: PYTHON (interpreter with rnnonnx[train] installed), WORK (run directory, default
# runs/bench, trained and exported as benchmarks/run_bench.sh does when missing), THREADS (default
# "1 2"), ROUNDS (interleaved rounds, default 5), MEASURE_SECONDS (default 1).
set -euo pipefail
# shellcheck source=benchmarks/settings.sh
source "$(dirname "$0")/settings.sh"

[ -f "$WORK/config.json" ] || "$PYTHON" -m rnnonnx.cli train --out "$WORK" --quiet
[ -f "$WORK/bundle/model.int8.onnx" ] || "$PYTHON" -m rnnonnx.cli export "$WORK" --out "$WORK/bundle" --quantize int8
copy=$(mktemp -d)
results=benchmarks/AVX2.md
tmp=$(mktemp "$results.XXXXXX")
trap 'rm -rf "$tmp" "$copy"' EXIT
avx2() { "$PYTHON" benchmarks/avx2_kernels.py --out "$copy" -- "$@"; }
# The cold start is RESULTS.md's subject (measured there five times over); here it is measured once, and left out.
no_cold_start() { sed '/^\*\*cold start/,/^\*\*targets/{/^\*\*targets/!d}' | grep -v 'cold start'; }
bench_args=("$WORK/bundle" --run "$WORK" "${thread_args[@]}" --rounds "$ROUNDS" --seconds "$SECONDS_EACH" --cold-runs 1 --markdown)
{
  echo "# int8 on ONNX Runtime's AVX2 kernels"
  echo
  echo "Measured $(date -u +%Y-%m-%d) with \`benchmarks/run_avx2_bench.sh\` (default \`rnnonnx train\` model on the built-in dataset)."
  echo
  echo "ONNX Runtime picks its kernels from the CPU when it loads. CPUs without int8 dot-product instructions (VNNI) run"
  echo "its AVX2 kernels, where a uint8 x int8 product takes three instructions instead of one. \`benchmarks/avx2_kernels.py\`"
  echo "makes a copy of the installed onnxruntime that takes those AVX2 kernels on a CPU that has VNNI (PyTorch and numpy held"
  echo "to AVX2 by their own settings), so the same machine times both. It runs the AVX2 kernels on this CPU's cores: the"
  echo "figures say what the kernels cost here, not what an older core makes of them."
  echo
  echo "## The kernels, and the twin's outputs on them"
  echo
  echo "\`python benchmarks/avx2_kernels.py --out DIR --compare $WORK/bundle\`: a 512 x 512 matrix product in ONNX Runtime, one"
  echo "thread, on the installed package and on the copy; then the largest difference between the int8 twin's outputs on"
  echo "this CPU's kernels and on the AVX2 ones, as shipped and with its weights stretched over the full int8 range."
  echo
  echo '```'
  "$PYTHON" benchmarks/avx2_kernels.py --out "$copy" --compare "$WORK/bundle"
  echo '```'
  echo
  echo "## Where an int8 LSTM step goes"
  echo
  echo "\`python benchmarks/lstm_kernel.py --rounds $ROUNDS\`, then the same on the copy: ONNX Runtime's fp32 LSTM and its int8"
  echo "kernel alone on the same random weights, one thread, 32 texts of 20 tokens per call (the predictor's calls hold 16-64"
  echo "texts of similar length); beside them the layer's matrix products alone. int8 speeds up the products only: the"
  echo "hidden state it quantizes at every step and the products it scales back are work fp32 does not do. A twin's two"
  echo "sentinel units make a 64-unit layer 66 wide for the kernel."
  echo
  echo "This CPU's kernels:"
  echo
  "$PYTHON" benchmarks/lstm_kernel.py --rounds "$ROUNDS"
  echo
  echo "AVX2 kernels:"
  echo
  avx2 "$PYTHON" benchmarks/lstm_kernel.py --rounds "$ROUNDS"
  echo
  echo "## Engines on this CPU's own kernels"
  echo
  echo "\`rnnonnx bench ${bench_args[*]}\`"
  echo
  "$PYTHON" -m rnnonnx.cli bench "${bench_args[@]}" | no_cold_start
  echo
  echo "## Engines on the AVX2 kernels"
  echo
  echo "\`python benchmarks/avx2_kernels.py --out DIR -- rnnonnx bench ${bench_args[*]}\` (the CPU line names the CPU, not the"
  echo "kernels: every engine here runs AVX2 code)"
  echo
  avx2 "$PYTHON" -m rnnonnx.cli bench "${bench_args[@]}" | no_cold_start
  echo
  echo "## int8 schemes on the AVX2 kernels"
  echo
  echo "\`python benchmarks/avx2_kernels.py --out DIR -- python benchmarks/int8_schemes.py $WORK ${thread_args[*]} --rounds $ROUNDS --seconds $SECONDS_EACH\`"
  echo "(as in [RESULTS.md](RESULTS.md#int8-schemes))"
  echo
  avx2 "$PYTHON" benchmarks/int8_schemes.py "$WORK" "${thread_args[@]}" --rounds "$ROUNDS" --seconds "$SECONDS_EACH"
} > "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$results"
trap 'rm -rf "$copy"' EXIT
echo "wrote $results"

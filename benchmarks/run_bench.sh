#!/usr/bin/env bash
# Reproduce benchmarks/RESULTS.md: train the default LSTM on the built-in data (once), export it,
# then time it with `rnnonnx bench` and benchmarks/batch_speed.py. Run it on an otherwise idle
# machine: the load average is recorded with the figures.
#
#   PYTHON=.venv/bin/python benchmarks/run_bench.sh
#
# Environment: PYTHON (interpreter with rnnonnx[train] installed), WORK (run directory, default
# runs/bench), EXPORT_ARGS (`rnnonnx export` options, default --quantize int8),
# BENCH_ARGS (extra `rnnonnx bench` options), ROWS (texts for batch_speed.py, default 100000),
# CORE_ENV (virtual environment given a plain `pip install .`, the predictor as users deploy it,
# whose `rnnonnx predict` cold start is judged against the targets; default runs/core-env).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WORK=${WORK:-runs/bench}
ROWS=${ROWS:-100000}
CORE_ENV=${CORE_ENV:-runs/core-env}
rnnonnx() { "$PYTHON" -m rnnonnx.cli "$@"; }

[ -f "$WORK/config.json" ] || rnnonnx train --out "$WORK" --quiet
# shellcheck disable=SC2086
rnnonnx export "$WORK" --out "$WORK/bundle" ${EXPORT_ARGS---quantize int8}
[ -x "$CORE_ENV/bin/python" ] || "$PYTHON" -m venv "$CORE_ENV"
"$CORE_ENV/bin/pip" install -q .
"$CORE_ENV/bin/pip" install -q --force-reinstall --no-deps .

results=benchmarks/RESULTS.md
tmp=$(mktemp "$results.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# rnnonnx benchmark"
  echo
  echo "Measured $(date -u +%Y-%m-%d) with \`benchmarks/run_bench.sh\` (default \`rnnonnx train\` model on the built-in dataset)."
  echo
  echo "How: \`rnnonnx bench\` runs each engine in a fresh process with the same thread count and the same texts"
  echo "(the built-in sentences). Latency is one text per call, tokenization included; throughput is texts/s at"
  echo "batch 32 and 256. PyTorch eager runs the run's safetensors weights, checked against the bundle before timing."
  echo "Cold start is a whole process classifying one sentence, wall time and the child's own peak RSS, median of the runs counted in the table:"
  echo "\`rnnonnx predict\` of the development environment (editable install, every extra) and of a core install (\`pip install .\` in its own venv), which the targets judge."
  echo "\`benchmarks/batch_speed.py\` times \`rnnonnx predict --input --output\` end to end, with and without bucketing."
  echo
  echo "## Engines and cold start"
  echo
  # shellcheck disable=SC2086
  rnnonnx bench "$WORK/bundle" --run "$WORK" --core-env "$CORE_ENV" --markdown ${BENCH_ARGS:-}
  echo
  echo "## One thread per engine"
  echo
  echo "The same measurement with \`--threads 1\` (on the machine named above, int8 gained over fp32 with one thread, not with two)."
  echo
  # shellcheck disable=SC2086
  rnnonnx bench "$WORK/bundle" --run "$WORK" --core-env "$CORE_ENV" --threads 1 --markdown ${BENCH_ARGS:-}
  echo
  echo "## Batch prediction at scale"
  echo
  "$PYTHON" benchmarks/batch_speed.py "$WORK/bundle" --rows "$ROWS"
} > "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$results"
trap - EXIT
echo "wrote $results"

# shellcheck shell=bash
# The settings benchmarks/run_bench.sh and benchmarks/run_avx2_bench.sh share, sourced by both: the
# repository root as the working directory, the interpreter, the run directory and the measurement
# defaults, each overridable from the environment (see the scripts' headers).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python}
WORK=${WORK:-runs/bench}
THREADS=${THREADS:-1 2}
ROUNDS=${ROUNDS:-5}
SECONDS_EACH=${MEASURE_SECONDS:-1}
thread_args=()
for t in $THREADS; do thread_args+=(--threads "$t"); done

#!/usr/bin/env bash
# Reproduce benchmarks/RESULTS.md: train the default LSTM on the built-in data (once), export it
# with its int8 twin, then time it with `rnnonnx bench` (interleaved rounds at 1 and 2 threads),
# compare the int8 schemes, profile where a second thread helps, and time batch prediction at
# scale. Run it on an otherwise idle machine: the load average is recorded with the figures.
#
#   PYTHON=.venv/bin/python benchmarks/run_bench.sh
#
# Environment: PYTHON (interpreter with rnnonnx[train] installed), WORK (run directory, default
# runs/bench), EXPORT_ARGS (`rnnonnx export` options, default --quantize int8), THREADS (thread
# counts, default "1 2"), ROUNDS (interleaved rounds, default 5), MEASURE_SECONDS (per measurement and
# round, default 1), BENCH_ARGS (extra `rnnonnx bench` options), ROWS (texts for batch_speed.py,
# default 100000), CORE_ENV (virtual environment given a plain `pip install .`, the predictor as
# users deploy it, whose `rnnonnx predict` cold start is judged against the targets; default
# runs/core-env), SUITE_OUT (the benchmark suite's splits and models: with them and the suite's
# fastText venv, the fastText comparison runs too; default /tmp/rnnonnx-suite).
set -euo pipefail
# shellcheck source=benchmarks/settings.sh
source "$(dirname "$0")/settings.sh"
ROWS=${ROWS:-100000}
CORE_ENV=${CORE_ENV:-runs/core-env}
SUITE_OUT=${SUITE_OUT:-/tmp/rnnonnx-suite}
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
  echo "How: \`rnnonnx bench\` runs the engines in interleaved rounds (ORT fp32, ORT int8, PyTorch eager, a numpy matrix product;"
  echo "then again, $ROUNDS times), each measurement in a fresh process of its own, one process at a time, with the same thread"
  echo "count and the same texts (the built-in sentences). Latency is one text per call, tokenization included; throughput is"
  echo "texts/s at batch 32 and 256. Every figure is the median over the rounds with its range (min-max); every ratio is taken"
  echo "within a round (engines timed minutes apart on a shared machine see different loads) and then its median and range"
  echo "reported. GFLOP/s counts the model's arithmetic on the timed texts (formula below); the numpy fp32 matrix product on the"
  echo "same threads, timed in every round, is the machine's reference peak. PyTorch eager runs the run's safetensors weights with"
  echo "the bundle's int8 embedding tables, checked against the bundle before timing. Cold start is a whole process classifying one sentence, wall time and the"
  echo "child's own peak RSS, the commands taking turns, median and range of the runs counted in the table: \`rnnonnx predict\`"
  echo "of the development environment and of a core install (\`pip install .\` in its own venv), which the targets judge."
  echo
  echo "## Engines, cold start and targets"
  echo
  echo "\`rnnonnx bench $WORK/bundle --run $WORK --core-env $CORE_ENV ${thread_args[*]} --rounds $ROUNDS --seconds $SECONDS_EACH --markdown ${BENCH_ARGS:-}\`"
  echo
  # shellcheck disable=SC2086
  rnnonnx bench "$WORK/bundle" --run "$WORK" --core-env "$CORE_ENV" "${thread_args[@]}" --rounds "$ROUNDS" --seconds "$SECONDS_EACH" --markdown ${BENCH_ARGS:-}
  echo
  echo "## int8 schemes"
  echo
  echo "\`python benchmarks/int8_schemes.py $WORK ${thread_args[*]} --rounds $ROUNDS --seconds $SECONDS_EACH\`: the int8 models"
  echo "export could write, built from the same run; \"alone vs batched\" is the largest change of a test text's probabilities"
  echo "between running it alone and in batches of other sizes and company. Every bundle's default graphs store \"embeddings int8\";"
  echo "\`rnnonnx export --quantize int8\` adds the \"LSTM kernel\" twins for an LSTM model (fixed ranges;"
  echo "\"LSTM kernel, batch scales\" is the same twin without them), \"weights int8\" for a GRU or RNN."
  echo
  "$PYTHON" benchmarks/int8_schemes.py "$WORK" "${thread_args[@]}" --rounds "$ROUNDS" --seconds "$SECONDS_EACH"
  echo
  if [ -d "$SUITE_OUT/models" ]; then
    echo "## int8 on the suite's sets"
    echo
    echo "\`python benchmarks/int8_suite.py --out $SUITE_OUT ${thread_args[*]} --rounds $ROUNDS --seconds $SECONDS_EACH\`: each"
    echo "benchmark-suite run exported again with \`--quantize int8\`, its test texts scored once in fp32 and in int8; \"alone vs"
    echo "batched\" as above, on up to 250 test texts, for fp32, the int8 twin export writes (fixed ranges) and the same twin with"
    echo "the batch's scales. Then the speed an app sees on each set, and why int8 gains what it gains there."
    echo
    "$PYTHON" benchmarks/int8_suite.py --out "$SUITE_OUT" "${thread_args[@]}" --rounds "$ROUNDS" --seconds "$SECONDS_EACH"
    echo
  fi
  echo "## Where a second thread helps"
  echo
  echo "\`python benchmarks/thread_scaling.py $WORK/bundle\`"
  echo
  "$PYTHON" benchmarks/thread_scaling.py "$WORK/bundle"
  echo "## Where the time goes"
  echo
  echo "\`python benchmarks/op_profile.py $WORK/bundle\`: ONNX Runtime's own profile of the text graph."
  echo
  "$PYTHON" benchmarks/op_profile.py "$WORK/bundle"
  echo
  echo "## An ensemble's latency against one member"
  echo
  echo "\`python benchmarks/ensemble_latency.py $WORK --rounds $ROUNDS\`: the direct ids graph of the whole model, of the model"
  echo "without its linear member and of its first member alone, embedding tables int8 as bundles store them (scaled back to"
  echo "fp32 before the Gather, folded by ONNX Runtime at load) and once more with the int8 rows gathered and scaled at every"
  echo "call; one text per call, ONNX Runtime's sequential executor at 1 and 2 intra-op threads and its parallel executor"
  echo "(independent branches on 2 inter-op threads), and the ensemble cut in two parts (two members; the third and the linear"
  echo "member), each graph in its own one-thread InferenceSession, the two run at once from two Python threads; last, the text"
  echo "graphs of the whole model and of the member (tokenization in the graph, as \`model.text.onnx\`), one raw text per call."
  echo "In the ids graph the members share everything but their embedding lookup and recurrent layer: one Gemm holds every"
  echo "member's head, one softmax squashes every vote; the linear member adds its own small operators (its bigram lookup,"
  echo "its weighted sum)."
  echo
  "$PYTHON" benchmarks/ensemble_latency.py "$WORK" --rounds "$ROUNDS"
  echo
  echo "One wide LSTM instead of the members side by side (\`python benchmarks/member_merge.py --threads N\`: the members'"
  echo "layers as one block-diagonal LSTM, same arithmetic plus the zero blocks, one operator instead of three):"
  echo
  for t in $THREADS; do
    "$PYTHON" benchmarks/member_merge.py --threads "$t" --rounds "$ROUNDS" | sed 's/^/- /'
  done
  echo
  echo "## Batch prediction at scale"
  echo
  "$PYTHON" benchmarks/batch_speed.py "$WORK/bundle" --rows "$ROWS"
  if [ -d "$SUITE_OUT/models" ] && [ -x benchmarks/.venv-fasttext/bin/python ]; then
    echo
    echo "## Against fastText, thread for thread"
    echo
    echo "\`python benchmarks/fasttext_speed.py --out $SUITE_OUT --rounds $ROUNDS\`: predict throughput on each benchmark-suite set's test"
    echo "texts, one thread each, fastText trained as the suite trained it, the engines taking turns in fresh processes. rnnonnx"
    echo "reads raw texts; fastText reads rnnonnx's tokens joined by spaces. The last column is the share of the ids graph's time"
    echo "spent in the Python tokenizer; the rest is the model. fastText's model averages a text's word and bigram vectors"
    echo "into one linear layer, thousands of multiply-adds per text; rnnonnx's default model runs three LSTMs over every token"
    echo "and the linear member, millions (the model arithmetic line above), so the gap is arithmetic, not the runtime."
    echo
    "$PYTHON" benchmarks/fasttext_speed.py --out "$SUITE_OUT" --rounds "$ROUNDS"
  fi
} > "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$results"
trap - EXIT
echo "wrote $results"

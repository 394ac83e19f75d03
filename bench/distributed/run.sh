#!/usr/bin/env bash
# Throughput of `trainbus train` with 1 and 2 local ranks, and the cost of the
# collectives per iteration. Usage: bench/distributed/run.sh [BUILD_DIR]
# 1 rank trains batch 2B in one process; 2 ranks train B each (global 2B):
# the same samples, the same updates.
set -euo pipefail
build=${1:-build}
bin="$build/bin/trainbus"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
config() {  # name batch [threads]
  cat > "$tmp/$1.json" <<JSON
{ "name": "$1", "log_root": "$tmp/runs",
  "trainer": { "epochs": 10, "batch_size": $2, "seed": 42, "num_threads": ${3:-1},
               "validate_every_n_epochs": 0 },
  "model": { "type": "cnn", "hidden": [8, 16] },
  "dataset": { "type": "shapes", "train_samples": 4000, "val_samples": 100 },
  "optimizer": { "type": "sgd", "lr": 0.05, "momentum": 0.9 },
  "plugins": [] }
JSON
  echo "$tmp/$1.json"
}
# 4000 samples x 10 epochs; it/s = iterations / seconds.
for b in 32 128; do
  one=$(config one-$b $((2 * b)))
  one2=$(config one2-$b $((2 * b)) 2)
  two=$(config two-$b $b)
  echo "== global batch $((2 * b))"
  echo -n "1 rank,  1 thread,  batch $((2 * b)):       "; "$bin" train --config "$one" | grep '^finished'
  echo -n "1 rank,  2 threads, batch $((2 * b)):       "; "$bin" train --config "$one2" | grep '^finished'
  echo -n "2 ranks, 1 thread each, batch $b/rank: "; "$bin" train --nproc 2 --config "$two" | grep '^finished'
done
"$build/bench/distributed/allreduce_bench" "$(config ar 32)" 1000

#!/usr/bin/env bash
# Where the trainer's time goes inside real runs, function by function.
#
#   scripts/profile-trainer.sh            # 3 repetitions of BM_PairedTrainer
#   REPETITIONS=5 scripts/profile-trainer.sh
#
# Samples the paired trainer benchmark (bench/trainer) with perf's cpu-clock
# event and DWARF call stacks (this VM has no hardware counters; a timer
# works everywhere), then scripts/profile-attribution.py splits the samples
# taken inside Trainer::Run into the model's forward/backward, the optimizer
# step, the plugins' hooks (hook by hook) and the rest. Sampling slows the run
# by about a third: compare profiles with each other, not with bench.sh.
#
# Needs perf (Debian: linux-perf), a developer tool that setup.sh does not
# install. The profile is left in build-bench/results/trainer.perf.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "profile-trainer: needs perf (apt-get install linux-perf)" >&2; exit 2; }
reps="${REPETITIONS:-3}"
if [ ! -f build-bench/build.ninja ]; then
  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTRAINBUS_BUILD_TESTS=OFF -DTRAINBUS_BUILD_EXAMPLES=OFF -DTRAINBUS_BUILD_BENCHMARKS=ON >/dev/null
fi
cmake --build build-bench -j "$(nproc)" --target trainer_overhead_bench
mkdir -p build-bench/results
out=build-bench/results/trainer.perf
perf record -q -e cpu-clock -F 5000 --call-graph dwarf,16384 -o "$out" -- \
  build-bench/bench/trainer/trainer_overhead_bench --benchmark_filter='BM_PairedTrainer/' \
  --benchmark_repetitions="$reps" >/dev/null 2>build-bench/results/trainer.perf.stderr
# Trainer runs in the process: 6 pairs a repetition, plus the one reference run.
runs=$(( reps * ${TRAINBUS_OVERHEAD_PAIRS:-6} + 1 ))
perf script -i "$out" -F ip,sym 2>/dev/null | scripts/profile-attribution.py --runs "$runs" --hz 5000

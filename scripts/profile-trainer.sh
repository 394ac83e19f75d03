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
# by about 40 %, and the machine's speed drifts between profiles: compare the
# parts of one profile, and functions across profiles, not with bench.sh.
# The plugins' part includes the bench's two clock plugins (RunClockHead/Tail).
# It also compares the LibTorch calls both loops make (forward, backward, the
# optimizer step, ...) between the bare loop's runs and the trainer's, by
# CPU samples: the paired bench's wall-clock model_ratio is too noisy for that.
# FUNCTIONS="a b" also prints each named function's total, callees included
# (e.g. FUNCTIONS="Bus::Publish PluginOptions::GetBool").
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
# A fixed period (200,000 ns of CPU: 5 kHz), so that a sample is always 0.2 ms.
if ! perf record -q -e cpu-clock -c 200000 --call-graph dwarf,16384 -o "$out" -- \
  build-bench/bench/trainer/trainer_overhead_bench --benchmark_filter='BM_PairedTrainer/' \
  --benchmark_repetitions="$reps" >/dev/null 2>build-bench/results/trainer.perf.stderr; then
  cat build-bench/results/trainer.perf.stderr >&2
  echo "profile-trainer: the benchmark failed" >&2
  exit 1
fi
# Trainer runs in the process: TRAINBUS_OVERHEAD_PAIRS (6 unless a positive
# number, as the bench reads it) a repetition, plus one reference run for the
# loss check, which TRAINBUS_OVERHEAD_ONLY skips.
pairs="${TRAINBUS_OVERHEAD_PAIRS:-6}"
[[ "$pairs" =~ ^[0-9]+$ ]] && (( pairs > 0 )) || pairs=6
runs=$(( reps * pairs ))
bare_runs=$runs
[ -n "${TRAINBUS_OVERHEAD_ONLY:-}" ] || runs=$(( runs + 1 ))
functions=()
for f in ${FUNCTIONS:-}; do functions+=(--function "$f"); done
perf script -i "$out" -F ip,sym 2>/dev/null |
  scripts/profile-attribution.py --runs "$runs" --bare-runs "$bare_runs" --hz 5000 ${functions[@]+"${functions[@]}"}

#!/usr/bin/env bash
# Builds (Release, build-bench/) and runs every benchmark, then prints the
# numbers the tables in docs/BENCHMARKS.md are made of.
#
#   scripts/bench.sh                 # bus, trainer overhead, TensorBoard writer, checkpoint barrier,
#                                    # the standalone writer's start-up, the health plugin
#   scripts/bench.sh bus trainer     # a subset (bus | trainer | tensorboard | checkpoint | standalone | health)
#
# REPETITIONS (default 15) sets the repetitions of the trainer comparison,
# run with random interleaving so that the bare loop and the trainer are
# measured side by side under the same machine load; the ratio is computed
# from the medians of that one run. WRITER_REPETITIONS (default 5) sets the
# writer bench's runs; it prints the median and the range [min-max] of
# each figure (scripts/bench-summary.py). Raw results (JSON) go to
# build-bench/results/. The trainer bench's progress lines go to
# build-bench/results/trainer_overhead.stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build_dir="${BENCH_BUILD_DIR:-build-bench}"
reps="${REPETITIONS:-15}"
writer_reps="${WRITER_REPETITIONS:-5}"
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(bus trainer tensorboard checkpoint standalone health)

if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTRAINBUS_BUILD_TESTS=OFF -DTRAINBUS_BUILD_EXAMPLES=OFF -DTRAINBUS_BUILD_BENCHMARKS=ON >/dev/null
fi
targets=()
for s in "${suites[@]}"; do
  case "$s" in
    bus) targets+=(bus_bench) ;;
    trainer|trainer-large) targets+=(trainer_overhead_bench) ;;
    tensorboard) targets+=(tensorboard_writer_bench) ;;
    checkpoint) targets+=(checkpoint_barrier_bench) ;;
    standalone) targets+=(standalone_writer_bench) ;;
    health) targets+=(health_bench) ;;
    *) echo "bench: unknown suite '$s' (bus, trainer, trainer-large, tensorboard, checkpoint, standalone, health)" >&2; exit 2 ;;
  esac
done
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"
results="$build_dir/results"
mkdir -p "$results"
cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
# A VM's model name can be only "AMD EPYC": the family, model and clock tell
# two machines of one name apart (this VM type ran a 2.0 GHz family-23 part one
# day and a 2.4 GHz part the day before, with different trainer ratios).
cpu_detail="$(awk -F': *' '/^cpu family/ && !f {f = $2} /^model[ \t]*:/ && !m {m = $2} /^cpu MHz/ && !z {z = $2}
  END {printf "family %s model %s, %.0f MHz", f, m, z}' /proc/cpuinfo)"
echo "bench: $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), CPU ${cpu_model:-?} (${cpu_detail}), load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# Medians of a console run with --benchmark_report_aggregates_only=true:
# "<name>_median <time> <unit> <cpu> <unit> <iterations> [counters]".
medians() { awk '/_median/ {print}' "$1"; }

for s in "${suites[@]}"; do
  case "$s" in
    bus)
      echo; echo "== bus: cost of publishing one IterationEnd (median of 5) =="
      "$build_dir/bench/bus/bus_bench" --benchmark_repetitions=5 \
        --benchmark_report_aggregates_only=true \
        --benchmark_out="$results/bus.json" --benchmark_out_format=json | tee "$results/bus.txt" >/dev/null
      medians "$results/bus.txt"
      ;;
    trainer)
      echo; echo "== trainer overhead: bare LibTorch loop vs trainbus::Trainer ($reps repetitions, interleaved) =="
      "$build_dir/bench/trainer/trainer_overhead_bench" --benchmark_repetitions="$reps" \
        --benchmark_enable_random_interleaving=true --benchmark_display_aggregates_only=true \
        --benchmark_out="$results/trainer_overhead.json" --benchmark_out_format=json \
        2>"$results/trainer_overhead.stderr" | tee "$results/trainer_overhead.txt" >/dev/null
      medians "$results/trainer_overhead.txt"
      awk '
        /_median/ { name = $1; sub(/\/.*$/, "", name); sub(/_median$/, "", name); t[name] = $2 }
        END {
          if (!("BM_BareLoop" in t) || !("BM_Trainer" in t)) { print "bench: missing medians"; exit 1 }
          printf "trainer / bare loop (medians):            %.4f  (%+.2f%%)\n", t["BM_Trainer"] / t["BM_BareLoop"], 100 * (t["BM_Trainer"] / t["BM_BareLoop"] - 1)
          if ("BM_BareLoopWithAccuracy" in t)
            printf "bare loop + train/accuracy / bare loop:   %.4f  (%+.2f%%)\n", t["BM_BareLoopWithAccuracy"] / t["BM_BareLoop"], 100 * (t["BM_BareLoopWithAccuracy"] / t["BM_BareLoop"] - 1)
          if ("BM_TrainerNoPlugins" in t)
            printf "trainer without plugins / bare loop:      %.4f  (%+.2f%%)\n", t["BM_TrainerNoPlugins"] / t["BM_BareLoop"], 100 * (t["BM_TrainerNoPlugins"] / t["BM_BareLoop"] - 1)
        }' "$results/trainer_overhead.txt"
      echo "paired (bare loop and variant back to back; median over repetitions of the ratio):"
      awk '/BM_Paired.*_median/ {
             name = $1; sub(/\/.*$/, "", name); sub(/^BM_Paired/, "", name)
             for (i = 1; i <= NF; ++i) if ($i ~ /^ratio=/) { r = substr($i, 7); printf "  %-26s / bare loop: %.4f  (%+.2f%%)\n", name, r, 100 * (r - 1) }
           }' "$results/trainer_overhead.txt"
      echo "the paired runs, median [min-max] over the repetitions:"
      scripts/bench-summary.py "$results/trainer_overhead.json" '^BM_Paired'
      ;;
    trainer-large)
      # The same comparison on a model whose iteration takes >= 10 ms (an MLP
      # 1024 wide, 2 epochs): paired runs only, LARGE_REPETITIONS (default 3).
      echo; echo "== trainer overhead on a larger model (hidden 1024, 2 epochs; ${LARGE_REPETITIONS:-3} repetitions of 3 pairs) =="
      TRAINBUS_OVERHEAD_HIDDEN=1024 TRAINBUS_OVERHEAD_EPOCHS=2 TRAINBUS_OVERHEAD_PAIRS=3 \
      "$build_dir/bench/trainer/trainer_overhead_bench" --benchmark_repetitions="${LARGE_REPETITIONS:-3}" \
        --benchmark_filter='^BM_Paired(Trainer|BareLoop)/' --benchmark_min_time=0 \
        --benchmark_display_aggregates_only=true \
        --benchmark_out="$results/trainer_large.json" --benchmark_out_format=json \
        2>"$results/trainer_large.stderr" >"$results/trainer_large.txt"
      scripts/bench-summary.py "$results/trainer_large.json"
      ;;
    tensorboard)
      echo; echo "== TensorBoard writer: median [min-max] of $writer_reps runs =="
      "$build_dir/bench/tensorboard/tensorboard_writer_bench" --benchmark_repetitions="$writer_reps" \
        --benchmark_display_aggregates_only=true \
        --benchmark_out="$results/tensorboard_writer.json" --benchmark_out_format=json \
        >"$results/tensorboard_writer.txt"
      scripts/bench-summary.py "$results/tensorboard_writer.json"
      ;;
    checkpoint)
      echo; echo "== checkpoint flush barrier: without / with file-writing plugins (median of 3) =="
      "$build_dir/bench/checkpoint/checkpoint_barrier_bench" --benchmark_repetitions=3 \
        --benchmark_report_aggregates_only=true \
        --benchmark_out="$results/checkpoint_barrier.json" --benchmark_out_format=json \
        2>/dev/null | tee "$results/checkpoint_barrier.txt" >/dev/null
      medians "$results/checkpoint_barrier.txt"
      ;;
    standalone)
      echo; echo "== a program that logs 1,000 scalars: writer alone vs with the tensor layer (median of 3) =="
      "$build_dir/bench/tensorboard/standalone_writer_bench" --benchmark_repetitions=3 \
        --benchmark_report_aggregates_only=true \
        --benchmark_out="$results/standalone_writer.json" --benchmark_out_format=json \
        | tee "$results/standalone_writer.txt" >/dev/null
      medians "$results/standalone_writer.txt"
      ;;
    health)
      echo; echo "== plugins that read the gradients, per iteration: health without and with gradient statistics, nonfinite_guard (median of 5) =="
      "$build_dir/bench/health/health_bench" --benchmark_repetitions=5 \
        --benchmark_report_aggregates_only=true \
        --benchmark_out="$results/health.json" --benchmark_out_format=json \
        2>/dev/null | tee "$results/health.txt" >/dev/null
      medians "$results/health.txt"
      ;;
  esac
done

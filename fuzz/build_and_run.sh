#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + coverage) and runs
# each for a bounded time on its committed seed corpus.
#
#   fuzz/build_and_run.sh                 # build, then run every target FUZZ_SECONDS (25) each,
#                                         # FUZZ_JOBS (one per core) at a time
#   fuzz/build_and_run.sh build           # build only
#   fuzz/build_and_run.sh run [target]    # run (all, or one target)
#   FUZZ_SECONDS=600 fuzz/build_and_run.sh run event_file_fuzzer   # a longer local session
#
# The targets compile the few sources they test directly (no LibTorch, no
# CMake tree): protobuf and Abseil come from Debian as shared libraries
# (uninstrumented: coverage guides through our code only). Output goes to
# build-fuzz/: binaries, generated protobuf code, the growing corpora
# (build-fuzz/corpus/<target>; the committed seeds in fuzz/corpus/<target>
# are read, never written) and crash artifacts (build-fuzz/artifacts/).
# Exit status: non-zero if a target fails to build or finds a crash; the
# crashing input is printed as a path and in base64.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="${FUZZ_OUT:-$root/build-fuzz}"
seconds="${FUZZ_SECONDS:-25}"
cxx="${FUZZ_CXX:-clang++}"
what="${1:-all}"
only="${2:-}"
targets=(event_file_fuzzer run_config_fuzzer plugin_options_fuzzer mnist_idx_fuzzer cifar10_fuzzer
         checkpoint_meta_fuzzer)

build() {
  local start; start=$(date +%s)
  command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
  mkdir -p "$out/gen" "$out/obj"
  # Generated code for the messages the tested sources use.
  protoc -I "$root/framework/trainer" --cpp_out="$out/gen" trainbus/proto/run_config.proto \
    trainbus/proto/checkpoint.proto
  protoc -I "$root/framework/tensorboard" --cpp_out="$out/gen" \
    trainbus/tensorboard/proto/tensor.proto trainbus/tensorboard/proto/summary.proto \
    trainbus/tensorboard/proto/event.proto trainbus/tensorboard/proto/plugins.proto \
    trainbus/tensorboard/proto/hparams.proto trainbus/tensorboard/proto/projector.proto
  local flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
               -I "$root/framework/core" -I "$root/framework/tensorboard"
               -I "$root/framework/trainer" -I "$out/gen")
  local libs
  libs="$(pkg-config --libs protobuf absl_status absl_statusor absl_strings absl_str_format) -lz"
  # name: sources (relative to the repo or to $out/gen)
  declare -A sources=(
    [event_file_fuzzer]="fuzz/event_file_fuzzer.cc framework/tensorboard/trainbus/tensorboard/inspect.cc
      framework/tensorboard/trainbus/tensorboard/event_file_reader.cc framework/tensorboard/trainbus/tensorboard/record_framing.cc
      framework/tensorboard/trainbus/tensorboard/crc32c.cc
      gen:trainbus/tensorboard/proto/tensor.pb.cc gen:trainbus/tensorboard/proto/summary.pb.cc
      gen:trainbus/tensorboard/proto/event.pb.cc gen:trainbus/tensorboard/proto/plugins.pb.cc
      gen:trainbus/tensorboard/proto/hparams.pb.cc gen:trainbus/tensorboard/proto/projector.pb.cc"
    [run_config_fuzzer]="fuzz/run_config_fuzzer.cc framework/trainer/trainbus/config.cc
      gen:trainbus/proto/run_config.pb.cc"
    [plugin_options_fuzzer]="fuzz/plugin_options_fuzzer.cc framework/core/trainbus/options.cc"
    [mnist_idx_fuzzer]="fuzz/mnist_idx_fuzzer.cc framework/trainer/trainbus/data/file_formats.cc"
    [cifar10_fuzzer]="fuzz/cifar10_fuzzer.cc framework/trainer/trainbus/data/file_formats.cc"
    [checkpoint_meta_fuzzer]="fuzz/checkpoint_meta_fuzzer.cc framework/trainer/trainbus/checkpoint_meta.cc
      gen:trainbus/proto/checkpoint.pb.cc"
  )
  local t src objs obj path
  for t in "${targets[@]}"; do
    objs=()
    for src in ${sources[$t]}; do
      if [[ $src == gen:* ]]; then path="$out/gen/${src#gen:}"; else path="$root/$src"; fi
      obj="$out/obj/$(echo "${src#gen:}" | tr '/' '_').o"
      # Rebuild when the source is newer (headers: rm -rf build-fuzz).
      if [ ! -f "$obj" ] || [ "$path" -nt "$obj" ]; then
        "$cxx" "${flags[@]}" -c "$path" -o "$obj" &
        # two compilers at a time
        while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
      fi
      objs+=("$obj")
    done
    wait
    # shellcheck disable=SC2086
    "$cxx" -fsanitize=fuzzer,address,undefined "${objs[@]}" $libs -o "$out/$t"
  done
  echo "fuzz: built ${targets[*]} in $(($(date +%s) - start)) s"
}

# One target's bounded run; its report is printed when it ends.
run_target() {
  local t="$1" name="${1%_fuzzer}" start status=0
  mkdir -p "$out/corpus/$name"
  start=$(date +%s)
  if ! ASAN_OPTIONS="detect_leaks=1:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
       UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
       "$out/$t" -seed=1 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
         -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" \
         "$out/corpus/$name" "$root/fuzz/corpus/$name" >"$out/$name.log" 2>&1; then
    status=1
    echo "fuzz: $t FOUND A CRASH (log: $out/$name.log):"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$out/$name.log" | head -20 || true
    local a
    for a in "$out/artifacts/$name-"*; do
      [ -f "$a" ] || continue
      echo "  input $a (base64): $(base64 -w0 "$a" | head -c 2000)"
    done
  fi
  local execs cov
  execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$out/$name.log" | grep -oE "[0-9]+$" || echo "?")
  cov=$(grep -oE "cov: [0-9]+" "$out/$name.log" | tail -1 | grep -oE "[0-9]+" || echo "?")
  echo "fuzz: $t ran $(($(date +%s) - start)) s: $execs inputs, coverage $cov edges, corpus $(ls "$out/corpus/$name" | wc -l) + $(ls "$root/fuzz/corpus/$name" | wc -l) seeds"
  return $status
}

# The targets run FUZZ_JOBS (default: one per core) at a time; each is one
# single-threaded process.
run() {
  local t p status=0 jobs="${FUZZ_JOBS:-$(nproc)}" pids=()
  mkdir -p "$out/artifacts"
  for t in "${targets[@]}"; do
    [ -n "$only" ] && [ "$t" != "$only" ] && continue
    run_target "$t" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || status=1; done
  done
  # Every target's status (bash keeps those already collected by wait -n).
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  return $status
}

case "$what" in
  build) build ;;
  run) run ;;
  all) build && run ;;
  *) echo "usage: $0 [all|build|run [target]]" >&2; exit 2 ;;
esac

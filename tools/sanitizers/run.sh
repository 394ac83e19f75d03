#!/usr/bin/env bash
# Builds the test suites with sanitizers and runs them.
#
#   tools/sanitizers/run.sh asan   # AddressSanitizer + UndefinedBehaviorSanitizer, every suite
#   tools/sanitizers/run.sh tsan   # ThreadSanitizer, the suites of code with threads of its own
#
# asan: build-asan/, -O1, no benchmarks or examples; every C++ suite.
# tsan: build-tsan/, the suites of code with threads of its own:
#       tensorboard_test (the writer's thread, its queue, concurrent add_*
#       from 8 threads, flush/close races, faults), dashboards_test
#       (record_graph runs a forward pass on the writer thread while the
#       caller trains) and batch_prefetcher_test (the trainer's prefetch
#       thread, built from its source alone). The rest of the framework
#       (checkpoint writer thread) is not built with TSan.
# Build folders are reused when present (BUILD_DIR overrides the folder);
# CMAKE_ARGS, extra configure arguments, configure the folder again.
# Each suite's binary runs once with all its tests (CTEST=1: one ctest
# process per test instead, ~1 s of LibTorch start-up each under ASan).
# Extra arguments go to every test binary (e.g. --gtest_filter=Bus*), or to
# ctest with CTEST=1.
#
# Suppressions (tools/sanitizers/*.supp) cover LibTorch / libgomp / system
# libraries only, never trainbus code; each entry says why.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
mode="${1:-}"
shift || true
supp="$root/tools/sanitizers"
jobs="${JOBS:-$(nproc)}"

case "$mode" in
  asan)
    build_dir="${BUILD_DIR:-build-asan}"
    sanitize="address,undefined"
    targets=()          # everything the tests need: benchmarks and examples are off
    ctest_filter=()
    ;;
  tsan)
    build_dir="${BUILD_DIR:-build-tsan}"
    sanitize="thread"
    targets=(--target tensorboard_test dashboards_test batch_prefetcher_test)
    ctest_filter=(-L "tensorboard|threads")
    ;;
  *)
    echo "usage: $0 asan|tsan [ctest arguments...]" >&2
    exit 2
    ;;
esac

start=$(date +%s)
if [ ! -f "$build_dir/build.ninja" ] || [ -n "${CMAKE_ARGS:-}" ]; then
  # No CMAKE_BUILD_TYPE flags: -O1 keeps the build and the run quick and the
  # stacks exact; -g1 gives file:line in reports. UB is fatal (no recovery).
  # shellcheck disable=SC2086
  cmake -S . -B "$build_dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_CXX_FLAGS="-O1 -g1 -fno-sanitize-recover=all" \
    -DTRAINBUS_SANITIZE="$sanitize" \
    -DTRAINBUS_BUILD_BENCHMARKS=OFF \
    -DTRAINBUS_BUILD_EXAMPLES=OFF ${CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build_dir" -j "$jobs" "${targets[@]}"
built=$(date +%s)
echo "sanitizers: $mode build took $((built - start)) s"

# One LibTorch thread: libgomp's pool is not instrumented (a TSan false
# positive source) and the suites do not depend on parallel kernels.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=1:abort_on_error=0:halt_on_error=1:suppressions=$supp/asan.supp${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

status=0
if [ -n "${CTEST:-}" ]; then
  # One process per test (ctest): isolation, at ~1 s of LibTorch start-up each.
  (cd "$build_dir" && ctest --output-on-failure -j "$jobs" --timeout 900 "${ctest_filter[@]}" "$@") || status=$?
else
  # Every suite's binary once, all its tests in one process: the same tests
  # as ctest (gtest_discover_tests registers each binary's tests), without
  # paying LibTorch's start-up under ASan ~170 times; JOBS at a time (default: nproc).
  if [ "$mode" = tsan ]; then
    binaries=("$build_dir/tests/tensorboard/tensorboard_test" "$build_dir/tests/tensorboard/dashboards_test"
              "$build_dir/tests/core/batch_prefetcher_test")
  else
    mapfile -t binaries < <(find "$build_dir/tests" -mindepth 2 -maxdepth 2 -type f -executable -name '*_test' | sort)
  fi
  [ ${#binaries[@]} -gt 0 ] || { echo "sanitizers: no test binaries in $build_dir/tests" >&2; exit 1; }
  # A suite that hangs fails after SUITE_TIMEOUT (default 900 s) instead of
  # holding up the run: the slowest takes under 90 s under ASan on 2 cores.
  JOBS="$jobs" "$supp/run_suites.sh" "$build_dir/sanitizer-logs" "${binaries[@]}" -- "$@" || status=$?
fi
echo "sanitizers: $mode tests took $(($(date +%s) - built)) s (total $(($(date +%s) - start)) s): $([ $status -eq 0 ] && echo passed || echo FAILED)"
exit $status

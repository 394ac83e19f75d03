#!/usr/bin/env bash
# README command 2: set up, build everything, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The real TensorBoard, tensorboardX and a browser for tests/tensorboard_compat
# (pinned, into build/test-tools; the train command needs none of them).
scripts/setup-test-tools.sh
# Compiler warnings are errors here (CI), not in the train command.
CMAKE_ARGS="-DTRAINBUS_WARNINGS_AS_ERRORS=ON ${CMAKE_ARGS:-}" scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "$(nproc)" --timeout 600)
# The same suites under AddressSanitizer + UndefinedBehaviorSanitizer, the
# writer's concurrency tests under ThreadSanitizer, and a bounded fuzzing run
# of every fuzz target over its committed corpus (tools/sanitizers, fuzz/).
tools/sanitizers/run.sh asan
tools/sanitizers/run.sh tsan
FUZZ_SECONDS="${FUZZ_SECONDS:-15}" fuzz/build_and_run.sh

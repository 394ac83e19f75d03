#!/usr/bin/env bash
# README command 2: set up, build everything, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The real TensorBoard, tensorboardX and a browser for tests/tensorboard_compat
# (pinned, into build/test-tools; the train command needs none of them).
scripts/setup-test-tools.sh
# Each test runs once (bad input twice), in the build where it checks the most:
#  - the Release build (what the train command ships): the end-to-end suites,
#    the real TensorBoard reading real runs, the installed package built out
#    of tree, bad input to the program, the docs checks;
#  - AddressSanitizer + UndefinedBehaviorSanitizer: every C++ suite, the bad
#    input one too (there without its address-space limit);
#  - ThreadSanitizer: the writer's concurrency suites;
#  - then a bounded fuzzing run of every fuzz target over its committed
#    corpus (tools/sanitizers, fuzz/).
# Compiler warnings are errors here (CI), not in the train command.
CMAKE_ARGS="-DTRAINBUS_WARNINGS_AS_ERRORS=ON -DTRAINBUS_BUILD_CXX_SUITES=OFF ${CMAKE_ARGS:-}" \
  scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "$(nproc)" --timeout 600)
# (Their own build folders: the Release build's BUILD_DIR and CMAKE_ARGS stay out.)
BUILD_DIR= CMAKE_ARGS="-DTRAINBUS_WARNINGS_AS_ERRORS=ON" tools/sanitizers/run.sh asan
BUILD_DIR= CMAKE_ARGS= tools/sanitizers/run.sh tsan
FUZZ_SECONDS="${FUZZ_SECONDS:-15}" fuzz/build_and_run.sh

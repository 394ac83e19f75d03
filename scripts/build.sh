#!/usr/bin/env bash
# Configures (once) and builds trainbus in ./build with Ninja.
#   scripts/build.sh [cmake --build arguments...]   e.g. --target trainbus_runtime
# BUILD_DIR and CMAKE_ARGS (extra configure arguments) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build}"
# Configure the first time, and whenever CMAKE_ARGS asks for a setting (the
# test command turns warnings into errors in the same build folder).
if [ ! -f "$build_dir/build.ninja" ] || [ -n "${CMAKE_ARGS:-}" ]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)" "$@"

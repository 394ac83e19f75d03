#!/usr/bin/env bash
# Runs GoogleTest suite programs, JOBS at a time (default: nproc), each once with all its
# tests, and says per suite whether it passed; called by run.sh.
#
#   tools/sanitizers/run_suites.sh LOG_DIR SUITE... [-- ARGUMENTS...]
#
# Each SUITE (a test program's path) runs in its own folder with ARGUMENTS
# (e.g. --gtest_filter=Bus*); its output goes to LOG_DIR/<name>.log. A suite
# that passes prints its "[  PASSED  ]" line; one that fails prints the
# sanitizer's or GoogleTest's error lines and the log's tail. A suite still
# running after SUITE_TIMEOUT seconds (default 900) is stopped (SIGTERM, then
# SIGKILL 10 s later) and fails, naming itself: a hang never holds up the run.
# Exits 0 when every suite passed, 1 otherwise.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 LOG_DIR SUITE... [-- ARGUMENTS...]" >&2
  exit 2
fi
logs="$1"
shift
suites=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do suites+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
if [ ${#suites[@]} -eq 0 ]; then
  echo "$0: no suite programs given before \"--\"" >&2
  exit 2
fi
jobs="${JOBS:-$(nproc)}"
suite_timeout="${SUITE_TIMEOUT:-900}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: JOBS must be a whole number >= 1, got '$jobs'" >&2
  exit 2
fi
mkdir -p "$logs"
logs="$(cd "$logs" && pwd)"

run_one() {
  local bin="$1" name; name=$(basename "$1")
  shift
  local s; s=$(date +%s)
  if (cd "$(dirname "$bin")" && timeout -k 10 "$suite_timeout" "./$name" "$@" >"$logs/$name.log" 2>&1); then
    echo "sanitizers: $name: $(grep -E '^\[  PASSED  \]' "$logs/$name.log" | tail -1) ($(($(date +%s) - s)) s)"
  else
    local rc=$?
    if [ "$rc" -eq 124 ]; then
      echo "sanitizers: $name TIMED OUT: still running after $suite_timeout s (SUITE_TIMEOUT);" \
           "the last test it started is in the log's last '[ RUN      ]' line"
    elif [ "$rc" -eq 137 ]; then
      # timeout's SIGKILL 10 s after its SIGTERM, or the kernel's (out of memory).
      echo "sanitizers: $name KILLED: it ignored SIGTERM after SUITE_TIMEOUT ($suite_timeout s)," \
           "or the kernel killed it (out of memory?)"
    fi
    echo "sanitizers: $name FAILED (exit $rc, $(($(date +%s) - s)) s); log $logs/$name.log:"
    # (A hung suite's log may match nothing: the tail below must still print.)
    { grep -E "ERROR: |SUMMARY: |runtime error|\[  FAILED  \]" "$logs/$name.log" || true; } |
      head -20 | sed 's/^/  /'
    tail -40 "$logs/$name.log" | sed 's/^/  | /'
    return 1
  fi
}

status=0
pids=()
for bin in "${suites[@]}"; do
  run_one "$bin" "$@" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || status=1; done
done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || status=1; done
exit $status

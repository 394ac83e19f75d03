#!/usr/bin/env bash
# Runs one unittest target of this suite with the pinned TensorBoard venv:
#   run_python_test.sh <build>/test-tools <module or module.Class>
# A missing venv is a failure with the fix named, never a skip.
set -euo pipefail
tools="$1"
target="$2"
python="$tools/venv/bin/python"
if [ ! -x "$python" ]; then
  echo "tensorboard_compat: no Python venv with TensorBoard at $tools/venv;" \
       "run scripts/setup-test-tools.sh (scripts/test.sh does) and try again" >&2
  exit 1
fi
if ! "$python" -c "import tensorboard, tensorboardX" 2>/dev/null; then
  echo "tensorboard_compat: $tools/venv lacks tensorboard or tensorboardX;" \
       "delete it and run scripts/setup-test-tools.sh" >&2
  exit 1
fi
# No __pycache__ in the source tree (the suite runs from it).
export PYTHONDONTWRITEBYTECODE=1
exec "$python" -m unittest -v "$target"

#!/usr/bin/env bash
# README command 1: set up, build, and train the default example (a small CNN
# on generated shape images) with the default plugins. Event files go to
# runs/<name>; extra arguments go to `trainbus train` (e.g. --set trainer.epochs=10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "building trainbus (the first build takes a few minutes) ..."
scripts/build.sh --target trainbus_runtime >/dev/null
exec build/bin/trainbus train --config examples/shapes/config.json "$@"

#!/usr/bin/env bash
# Installs what only the test suite needs, never system-wide Python or npm
# packages: Debian's chromium (and python3-venv, nodejs/npm if missing), then
# into the build folder a Python virtual environment with the pinned
# TensorBoard and tensorboardX (tests/tensorboard_compat/requirements.txt) and
# node_modules with the pinned playwright-core (package.json beside it).
# Quiet and quick when everything is already there. scripts/test.sh calls it;
# the train command does not need any of it.
#   BUILD_DIR (default build) sets the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build}"
tools="$build_dir/test-tools"
compat=tests/tensorboard_compat

# Debian packages: a browser for the web-UI check, venv for Python, node for playwright.
packages=(chromium python3-venv)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-test-tools: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$tools"
# The venv is rebuilt when requirements.txt changes (its copy is the stamp).
if ! cmp -s "$compat/requirements.txt" "$tools/venv/requirements.txt" 2>/dev/null; then
  echo "setup-test-tools: installing TensorBoard and tensorboardX into $tools/venv"
  rm -rf "$tools/venv"
  /usr/bin/python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check --no-input \
    -r "$compat/requirements.txt"
  cp "$compat/requirements.txt" "$tools/venv/requirements.txt"
fi

if ! cmp -s "$compat/package.json" "$tools/package.json" 2>/dev/null; then
  echo "setup-test-tools: installing playwright-core into $tools/node_modules"
  cp "$compat/package.json" "$tools/package.json"
  rm -rf "$tools/node_modules"
  (cd "$tools" && npm install --no-audit --no-fund --loglevel=error >/dev/null) || {
    rm -f "$tools/package.json"; exit 1; }
fi

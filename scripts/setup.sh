#!/usr/bin/env bash
# Installs the Debian packages trainbus needs, only those that are missing.
# Idempotent and quiet when everything is present. Needs root (or sudo) only
# when something must be installed.
set -euo pipefail

# Every package the build, the tests and the benchmarks use. Keep in sync with
# the table in docs/DEPENDENCIES.md.
packages=(
  g++ cmake ninja-build pkg-config
  libtorch-dev                       # LibTorch 1.13 (CPU)
  libprotobuf-dev protobuf-compiler  # messages, config parsers
  libabsl-dev                        # Status, flags, strings, synchronization
  libgtest-dev libgmock-dev          # tests
  libbenchmark-dev                   # bench/
  libpng-dev zlib1g-dev              # PNG encoding for TensorBoard images
  libgif-dev                         # GIF encoding for add_video
  libgloo-dev                        # c10d ProcessGroupGloo headers (distributed training)
  clang libclang-rt-14-dev           # fuzz/ (libFuzzer)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing missing Debian packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"

#!/usr/bin/env bash
# scripts/setup.sh - install kdcl's build and run dependencies from Debian
# (idempotent: does nothing when all are present), then configure and build
# in ./build.  Run as root on Debian 12; the other scripts call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential pkg-config meson ninja-build python3 python3-numpy
  ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo oclgrind
  libclblast-dev libblis-dev libcriterion-dev libcjson-dev libyaml-dev
  zlib1g-dev
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f build/build.ninja ]; then
  meson setup build
else
  meson setup --reconfigure build >/dev/null
fi
ninja -C build

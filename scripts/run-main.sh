#!/usr/bin/env bash
# scripts/run-main.sh - set up (scripts/setup.sh), then run the main job on
# sensible defaults: list the OpenCL devices, the plugins, and measure the
# default device with kdcl bench (hinton at the standard shapes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
./build/core/kdcl devices
./build/core/kdcl plugins
./build/core/kdcl bench --plugin hinton

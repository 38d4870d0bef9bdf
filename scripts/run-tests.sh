#!/usr/bin/env bash
# scripts/run-tests.sh - set up (scripts/setup.sh), run the whole test suite
# on the default OpenCL device, then run the kernel tests once more under
# Oclgrind (a checking OpenCL implementation) with small shapes, failing on
# any error it reports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
meson test -C build --print-errorlogs --num-processes 2
bash scripts/oclgrind-check.sh

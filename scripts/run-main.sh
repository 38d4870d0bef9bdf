#!/usr/bin/env bash
# scripts/run-main.sh - set up (scripts/setup.sh), then run the main job on
# sensible defaults: a complete distillation on Fashion-MNIST on the
# default OpenCL device.  kdcl trains a LeNet-5 teacher (or reuses the one
# it cached under ~/.cache/kdcl/teachers), trains LeNet-5-half with Hinton
# KD and, for comparison, the same student alone on the same seed, and
# prints a table of teacher / student alone / student with KD accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
./build/core/kdcl devices
# 10 epochs for each model (the config's defaults); set KDCL_EPOCHS to
# shorten a trial run.
./build/core/kdcl distill examples/configs/fashion-lenet5.yaml --baseline \
    --set train.epochs="${KDCL_EPOCHS:-10}" \
    --set teacher.epochs="${KDCL_EPOCHS:-10}" \
    --json build/main-job.json

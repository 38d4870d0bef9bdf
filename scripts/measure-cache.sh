#!/usr/bin/env bash
# scripts/measure-cache.sh - first-run kernel build cost vs the caches, on
# the default device: `kdcl loss --plugin hinton` on a 4x10 input (compute
# is negligible; the time is process start + kernel build) with
#   cold:       kdcl disk cache off, driver (PoCL) cache off
#   driver:     kdcl disk cache off, PoCL's kernel cache warm
#   kdcl:       kdcl disk cache warm, PoCL's kernel cache off
# Prints the median of N runs (default 5) for each.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
kdcl=./build/core/kdcl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp" <<'PY'
import struct, sys
def save(path, vals, shape):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % shape
    hdr += " " * (64 - (10 + len(hdr) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(struct.pack("<%df" % len(vals), *vals))
save(sys.argv[1] + "/s.npy", [i * 0.1 for i in range(40)], (4, 10))
save(sys.argv[1] + "/t.npy", [i * -0.1 for i in range(40)], (4, 10))
PY
run() { "$kdcl" loss --plugin hinton --student "$tmp/s.npy" --teacher "$tmp/t.npy" >/dev/null; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
timeit() {  # label, env...
  local label=$1; shift
  for _ in $(seq "$n"); do
    "$@" >/dev/null
    local t0 t1
    t0=$(date +%s.%N); env "${prep[@]}" bash -c "$(declare -f run); kdcl=$kdcl tmp=$tmp run"; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
  done | median | xargs printf "%-8s %.3f s\n" "$label"
}
# cold: nothing cached anywhere
prep=(KDCL_CACHE=0 POCL_KERNEL_CACHE=0)
timeit cold true
# driver: PoCL's cache warm (primed by one run), kdcl's off
prep=(KDCL_CACHE=0 POCL_CACHE_DIR="$tmp/pocl")
env POCL_CACHE_DIR="$tmp/pocl" KDCL_CACHE=0 "$kdcl" loss --plugin hinton --student "$tmp/s.npy" --teacher "$tmp/t.npy" >/dev/null
timeit driver true
# kdcl: kdcl's disk cache warm (primed by one run), PoCL's off
prep=(KDCL_CACHE_DIR="$tmp/kdcl" POCL_KERNEL_CACHE=0)
env KDCL_CACHE_DIR="$tmp/kdcl" POCL_KERNEL_CACHE=0 "$kdcl" loss --plugin hinton --student "$tmp/s.npy" --teacher "$tmp/t.npy" >/dev/null
timeit kdcl true
# both: kdcl's and PoCL's caches warm (what a user sees on a second run)
prep=(KDCL_CACHE_DIR="$tmp/kdcl2" POCL_CACHE_DIR="$tmp/pocl2")
env KDCL_CACHE_DIR="$tmp/kdcl2" POCL_CACHE_DIR="$tmp/pocl2" "$kdcl" loss --plugin hinton --student "$tmp/s.npy" --teacher "$tmp/t.npy" >/dev/null
timeit both true

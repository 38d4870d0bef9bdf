#!/usr/bin/env bash
# scripts/oclgrind-check.sh - run the kernel tests once more under Oclgrind,
# a checking OpenCL implementation (API misuse, out-of-bounds accesses,
# uninitialised reads, data races), with small shapes.  Fails when a test
# fails or when Oclgrind reports anything.  Expects a built ./build.
set -uo pipefail
cd "$(dirname "$0")/.."
log=build/oclgrind.log
: >"$log"
# Small shapes; tests that provoke OpenCL API errors on purpose skip
# themselves (KDCL_TEST_CHECKING); every build is fresh; no device
# allocation is reused (Oclgrind 21.10 misreports reused allocations as
# uninitialised, see docs/testing.md).
# GEMM runs on the host BLAS: CLBlast's kernels are not kdcl's to check
# (Oclgrind reports values they read from tile padding).
export KDCL_TEST_SMALL=1 KDCL_TEST_CHECKING=1 KDCL_CACHE=0 KDCL_CHECKER=1
export KDCL_GEMM=host
fail=0
for t in build/tests/test-launch build/tests/test-tensor build/tests/test-nn \
         build/tests/test-plugin-*; do
  case "$t" in *plugin-load) continue ;; esac
  case "$t" in *.p) continue ;; esac
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s)
  if oclgrind --check-api --data-races --uninitialized \
       "$t" --jobs 2 >"$log.$name" 2>&1; then
    result=ok
  else
    result=FAILED
    fail=1
  fi
  cat "$log.$name" >>"$log"
  errors=$(grep -cE "Invalid (read|write)|[Uu]ninitiali[sz]ed|data race|runtime error detected|^[[:space:]]*Entity: " "$log.$name")
  [ "$errors" -gt 0 ] && { result="FAILED ($errors Oclgrind reports)"; fail=1; }
  echo "oclgrind: $name: $result ($(( $(date +%s) - start )) s)"
  [ "$result" = ok ] || sed -n '1,60p' "$log.$name"
  rm -f "$log.$name"
done
if [ "$fail" -ne 0 ]; then
  echo "oclgrind: errors found (full log: $log)"
  exit 1
fi
echo "oclgrind: all kernel tests clean"

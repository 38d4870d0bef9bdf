#!/usr/bin/env bash
# scripts/bench-rounds.sh ROUNDS [kdcl bench options] - run `kdcl bench`
# ROUNDS times (one process each, so that the copy bandwidth is measured
# afresh every round) and print per plugin and size the median time, GB/s
# and ratio to that round's copy bandwidth, with the range of the ratio.
# For hosts whose figures move between runs (shared VMs); the JSON of
# every round is kept in build/bench-rounds/.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?usage: bench-rounds.sh ROUNDS [kdcl bench options]}
shift
mkdir -p build/bench-rounds
rm -f build/bench-rounds/round-*.json
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  ./build/core/kdcl bench "$@" --json "build/bench-rounds/round-$r.json" \
      >/dev/null
done
python3 - build/bench-rounds/round-*.json <<'PY'
import json, statistics, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
med = statistics.median
copy = [r["copy_gbps"] for r in runs]
print("device: %s; %d rounds" % (runs[0]["device"]["name"], len(runs)))
print("copy bandwidth GB/s: median %.1f, range %.1f-%.1f"
      % (med(copy), min(copy), max(copy)))
rows = {}
for r in runs:
    for x in r.get("results", []):
        rows.setdefault((x["plugin"], x["size"]), []).append(x)
print("%-14s %-12s %10s %8s %8s %13s" % ("plugin", "size", "median ms",
      "GB/s", "ratio", "ratio range"))
for (p, s), xs in rows.items():
    ratio = [x["ratio_to_copy"] for x in xs]
    print("%-14s %-12s %10.3f %8.2f %7.0f%% %6.0f-%.0f%%"
          % (p, s, med(x["median_ms"] for x in xs),
             med(x["gbps"] for x in xs), 100 * med(ratio),
             100 * min(ratio), 100 * max(ratio)))
PY

#!/usr/bin/env bash
# scripts/results.sh CONFIG [SEEDS] [--set ...] - run `kdcl distill
# CONFIG --baseline` once per seed (default 1 2 3), each with its own
# teacher, and print teacher / student alone / student with KD test
# accuracy as mean +- standard deviation, for docs/results.md.  The JSON
# summaries are kept in build/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=${1:?usage: results.sh CONFIG [SEEDS] [--set KEY=VALUE]...}
seeds=${2:-1 2 3}
shift $(( $# >= 2 ? 2 : 1 ))
name=$(basename "$cfg" .yaml)
mkdir -p build/results
jsons=()
for s in $seeds; do
  out="build/results/$name-seed$s.json"
  ./build/core/kdcl distill "$cfg" --baseline --set seed="$s" "$@" \
      --json "$out" </dev/null
  jsons+=("$out")
done
python3 - "${jsons[@]}" <<'PY'
import json, statistics, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
def stat(key):
    v = [100 * r[key] for r in runs]
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return "%.2f +- %.2f" % (statistics.mean(v), sd)
r0 = runs[0]
print("plugin %s, params %s, epochs %d, seeds %s, device %s"
      % (r0["plugin"], r0["params"], r0["epochs"],
         ", ".join(str(r["seed"]) for r in runs), r0["device"]["name"]))
print("| teacher | student alone | student with KD | KD - alone |")
print("|---|---|---|---|")
gain = [100 * (r["student_accuracy"] - r["baseline_accuracy"]) for r in runs]
print("| %s | %s | %s | %+.2f |" % (stat("teacher_accuracy"),
      stat("baseline_accuracy"), stat("student_accuracy"),
      statistics.mean(gain)))
PY

#!/usr/bin/env bash
# scripts/plugin-results.sh [SEEDS] [PLUGINS] [--set KEY=VALUE]... - every
# distillation plugin at its defaults on examples/configs/fashion-lenet5-
# plugins.yaml (LeNet-5 -> LeNet-5-half on Fashion-MNIST), one run per seed
# and plugin; the first plugin's run of each seed also trains the student
# alone (--baseline), with the same initialisation and data order.  Prints
# a markdown table of test accuracy (mean +- standard deviation over the
# seeds) and the gain over the student alone, for docs/plugins.md.  The
# JSON summaries are kept in build/results/plugins/; a run whose JSON is
# already there is not repeated, so an interrupted run resumes where it
# stopped (delete the folder to start over).  TAG=-name names the JSON of
# a variant apart, e.g.
#   TAG=-cosine bash scripts/plugin-results.sh "1 2 3" relation \
#       --set plugin.params.metric=cosine
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1 2 3}
plugins=${2:-hinton dkd dist multiteacher feature relation rkd sp pkt attention graph}
shift $(( $# >= 2 ? 2 : $# ))
cfg=examples/configs/fashion-lenet5-plugins.yaml
dir=build/results/plugins
mkdir -p "$dir"
tag=${TAG:-}
for s in $seeds; do
  for p in $plugins; do
    out="$dir/$p$tag-seed$s.json"
    [ -f "$out" ] && continue
    base=
    [ -f "$dir/baseline-seed$s.json" ] || base=--baseline
    ./build/core/kdcl distill "$cfg" $base --set seed="$s" \
        --set plugin.name="$p" "$@" --json "$out.tmp" </dev/null
    mv "$out.tmp" "$out"
    [ -z "$base" ] || cp "$out" "$dir/baseline-seed$s.json"
  done
done
python3 - "$dir" "$seeds" "$plugins" "$tag" <<'PY'
import json, os, statistics, sys
d, seeds, plugins = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
tag = sys.argv[4]
def load(name, s):
    p = os.path.join(d, "%s-seed%s.json" % (name, s))
    return json.load(open(p)) if os.path.exists(p) else None
def ms(v):
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return "%.2f +- %.2f" % (statistics.mean(v), sd)
base = {s: load("baseline", s) for s in seeds}
alone = [100 * b["baseline_accuracy"] for b in base.values() if b]
teach = [100 * b["teacher_accuracy"] for b in base.values() if b]
r0 = next(b for b in base.values() if b)
print("epochs %d, seeds %s, device %s" % (r0["epochs"], " ".join(seeds),
                                          r0["device"]["name"]))
print("teacher %s, student alone %s" % (ms(teach), ms(alone)))
print("| plugin | student with KD | KD - alone | per seed |")
print("|---|---|---|---|")
for p in plugins:
    runs = [(s, load(p + tag, s)) for s in seeds]
    runs = [(s, r) for s, r in runs if r and base[s]]
    if not runs:
        continue
    acc = [100 * r["student_accuracy"] for _, r in runs]
    gain = [100 * (r["student_accuracy"] - base[s]["baseline_accuracy"])
            for s, r in runs]
    print("| `%s%s` | %s | %+.2f | %s |" % (p, tag, ms(acc), statistics.mean(gain),
          " / ".join("%.2f" % a for a in acc)))
PY

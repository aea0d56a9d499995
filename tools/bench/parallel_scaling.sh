#!/usr/bin/env bash
# Expert and data parallelism on this machine, side by side in one run: a recipe (default the
# quickstart) for STEPS steps in one process, in two processes with expert degree 2, and in two
# with data parallelism only. Prints tokens/s of each with its ratio to one process, rank 0's time
# split from the metrics (experts' all-to-all, all-reduces, the rest: computation and waiting),
# and how far each loss curve is from the one-process curve.
#
#   bash tools/bench/parallel_scaling.sh [STEPS] [RECIPE]
set -euo pipefail
steps=${1:-100}
recipe=${2:-recipes/quickstart.toml}
moelab=build/bin/moelab
out=$(mktemp -d /tmp/moelab-parallel-XXXXXX)
common=(--set "train.steps=$steps" --set train.eval_every=0 --set "train.checkpoint_every=$steps"
        --set eval.max_batches=1)
echo "recipe $recipe, $steps steps, $(nproc) cores; runs in $out" >&2
"$moelab" run "$recipe" --out "$out/one" "${common[@]}" >/dev/null
"$moelab" launch -n 2 -- run "$recipe" --out "$out/expert2" "${common[@]}" \
    --set parallel.expert=2 >/dev/null
"$moelab" launch -n 2 -- run "$recipe" --out "$out/data2" "${common[@]}" >/dev/null
python3 - "$out" <<'PY'
import json, sys
root = sys.argv[1]

def records(run):
    with open(f"{root}/{run}/metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]

def summary(run):
    train = [r for r in records(run) if r["type"] == "train"]
    timed = train[1:] or train  # the first window includes warm-up
    window = sum(r.get("parallel_s", {}).get("window", 0) for r in timed)
    rate = sum(r["tokens_per_s"] for r in timed) / len(timed)
    a2a = sum(r.get("parallel_s", {}).get("all_to_all", 0) for r in timed)
    reduce = sum(r.get("parallel_s", {}).get("all_reduce", 0) for r in timed)
    return rate, a2a, reduce, window, [r["loss"] for r in train]

one = summary("one")
print(f"{'layout':34} {'tokens/s':>9} {'vs 1 proc':>9} {'all-to-all':>10} {'all-reduce':>10} "
      f"{'rest':>6} {'max |dloss|':>11}")
for run, label in [("one", "1 process"), ("expert2", "2 processes, expert degree 2"),
                   ("data2", "2 processes, data parallel only")]:
    rate, a2a, reduce, window, losses = summary(run)
    share = (lambda s: f"{100 * s / window:9.1f}%") if window > 0 else (lambda s: f"{'-':>10}")
    rest = f"{100 * (window - a2a - reduce) / window:5.1f}%" if window > 0 else f"{'-':>6}"
    delta = max(abs(a - b) for a, b in zip(losses, one[4]))
    print(f"{label:34} {rate:9.0f} {rate / one[0]:9.2f} {share(a2a)} {share(reduce)} {rest} "
          f"{delta:11.2e}")
PY

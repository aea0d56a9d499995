#!/usr/bin/env bash
# Trains every router of recipes/routers/ side by side on this machine and prints the comparison
# table of docs/routers.md: the dense baseline, the MoE routers, and the DSMoE threshold sweep
# (which starts from the dense baseline's checkpoint). Every MoE run is also evaluated with each
# router's top expert disabled (the routing-robustness probe, methods.md §2.7).
#
# Usage: tools/compare_routers.sh [--steps N] [--out DIR]
#   --steps N  train every recipe for N steps instead of its own schedule (a quicker table)
#   --out DIR  where the runs go (default runs/routers); finished runs are reused, so an
#              interrupted comparison continues where it stopped
set -euo pipefail
cd "$(dirname "$0")/.."

steps="" out="runs/routers"
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: tools/compare_routers.sh [--steps N] [--out DIR]" >&2; exit 2 ;;
    esac
done
moelab=build/bin/moelab
[ -x "$moelab" ] || { echo "error: $moelab is missing; run tools/setup.sh first" >&2; exit 2; }

schedule=()
if [ -n "$steps" ]; then
    warmup=$(( steps / 10 < 50 ? steps / 10 : 50 ))
    schedule=(--set "train.steps=$steps" --set "train.warmup_steps=$warmup" --set train.eval_every=0)
fi

run() {  # run NAME RECIPE [--set ...]
    local name=$1 recipe=$2; shift 2
    if [ -f "$out/$name/summary.json" ]; then
        echo "== $name: done before, reusing $out/$name"
        return
    fi
    rm -rf "${out:?}/$name"
    echo "== $name: $recipe"
    "$moelab" run "$recipe" --out "$out/$name" "${schedule[@]}" "$@"
}

mkdir -p "$out"
run dense-baseline recipes/dense-baseline.toml
for router in topk smoe-share topp hash maskmoe cartesian finedeep deepseek expert_choice \
    topk-sequence-balance topk-accum4 topk-global-balance; do
    run "$router" "recipes/routers/$router.toml"
done
# DeepSeek-V3's bias rate moves slowly for a short schedule: also a ten times faster one.
run deepseek-rate-0.01 recipes/routers/deepseek.toml --set router.bias_rate=0.01
for tau in 0.3 0.5 0.7 0.9; do
    run "dsmoe-tau-$tau" "recipes/routers/dsmoe-tau/tau-$tau.toml" \
        --set "init.from=$out/dense-baseline"
done
for dir in "$out"/*/; do
    name=$(basename "$dir")
    if [ "$name" != dense-baseline ] && [ -f "$dir/summary.json" ] && [ ! -f "$dir/top1-disabled.json" ]; then
        echo "== $name: validation with the top expert disabled"
        # A router that does not honour disable_top (Hash) is refused with its reason: n/a.
        if "$moelab" eval "$dir" --perturb disable_top=1 --json >"$dir/top1-disabled.json.tmp"; then
            mv "$dir/top1-disabled.json.tmp" "$dir/top1-disabled.json"
        else
            rm -f "$dir/top1-disabled.json.tmp"
        fi
    fi
done
python3 tools/routers_table.py "$out"

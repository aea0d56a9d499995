#!/usr/bin/env bash
# The CPU training step of each recipe, profiled (`moelab run --profile`): tokens/s, achieved
# GFLOP/s and MFU against the machine's GEMM peak, and where the step's time goes, side by side
# for every recipe in one run. Run it on an idle machine: other work slows the step and the peak.
#
#   tools/bench/train_step.sh [--steps N (default 30)] [--out DIR] [--baseline MOELAB] [RECIPE...]
#       (default recipes: recipes/quickstart.toml recipes/perf/wide.toml)
#
# --baseline: another build's moelab binary (an earlier commit built in its own tree, with its
# plugins): each recipe runs under it and under this tree's build, one after the other, and the
# table gives both and their ratio. Measured in one run, the machine's state is the same for both.
#
# Each run trains N steps (the first 2 are warm-up and not profiled) with evaluation off and
# leaves its run directory under DIR (default a temporary directory): profile.json, summary.json.
# The table at the end is also written to DIR/train_step.json.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
moelab="$root/build/bin/moelab"
steps=30
out=""
baseline=""
recipes=()
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) recipes+=("$1"); shift ;;
    esac
done
if ! [[ "$steps" =~ ^[0-9]+$ ]] || [ "$steps" -lt 3 ]; then
    echo "train_step.sh: --steps needs a whole number of at least 3, got '$steps'" >&2
    exit 2
fi
if [ ${#recipes[@]} -eq 0 ]; then
    recipes=("$root/recipes/quickstart.toml" "$root/recipes/perf/wide.toml")
fi
if [ ! -x "$moelab" ]; then
    echo "train_step.sh: $moelab is missing; build first (tools/setup.sh)" >&2
    exit 1
fi
if [ -z "$out" ]; then out=$(mktemp -d /tmp/moelab-train-step.XXXXXX); fi
mkdir -p "$out"

if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "train_step.sh: --baseline $baseline is not an executable moelab" >&2
    exit 2
fi

runs=()
profile_run() {  # BINARY LABEL RECIPE
    local dir="$out/$2"
    rm -rf "$dir"
    echo "== $2: $3, $steps steps, profiled after 2 ($1)"
    # Run where the recipe's relative data paths resolve: the repository root.
    (cd "$root" && "$1" run "$3" --profile --out "$dir" --set "train.steps=$steps" \
        --set "train.warmup_steps=2" --set "train.eval_every=0" --set "train.log_every=$steps" \
        --set "eval.max_batches=1") | sed -n '/^profile of/,/^step  /p'
    runs+=("$2=$dir")
}
for recipe in "${recipes[@]}"; do
    name=$(basename "$recipe" .toml)
    if [ -n "$baseline" ]; then profile_run "$baseline" "$name-baseline" "$recipe"; fi
    profile_run "$moelab" "$name" "$recipe"
done

/usr/bin/python3 - "$out" "${runs[@]}" <<'EOF'
import json, sys
out, runs = sys.argv[1], sys.argv[2:]
rows = []
for run in runs:
    name, directory = run.split("=", 1)
    profile = json.load(open(f"{directory}/profile.json"))
    summary = json.load(open(f"{directory}/summary.json"))
    shares = sorted(profile["breakdown"], key=lambda r: -r["seconds"])[:4]
    rows.append({
        "recipe": name,
        "ms_per_step": profile["step_seconds"] * 1e3,
        "tokens_per_s": profile["tokens_per_second"],
        "run_tokens_per_s": summary["throughput"]["training_tokens_per_second"],
        "gflops": profile.get("achieved_gflops"),
        "mfu": profile.get("mfu"),
        "top": [(r["name"], r["share"]) for r in shares],
    })
json.dump(rows, open(f"{out}/train_step.json", "w"), indent=2)
print()
print(f"{'run':<20} {'ms/step':>9} {'tok/s':>8} {'run tok/s':>10} {'GFLOP/s':>8} {'MFU':>6}  largest shares")
for r in rows:
    top = ", ".join(f"{n} {100 * s:.0f}%" for n, s in r["top"])
    gflops = f"{r['gflops']:.1f}" if r["gflops"] is not None else "n/a"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
    print(f"{r['recipe']:<20} {r['ms_per_step']:>9.1f} {r['tokens_per_s']:>8.0f} "
          f"{r['run_tokens_per_s']:>10.0f} {gflops:>8} {mfu:>6}  {top}")
by_name = {r["recipe"]: r for r in rows}
for r in rows:
    base = by_name.get(r["recipe"] + "-baseline")
    if base:
        print(f"{r['recipe']}: {base['ms_per_step'] / r['ms_per_step']:.3f}x the baseline's speed "
              f"({base['tokens_per_s']:.0f} -> {r['tokens_per_s']:.0f} tokens/s)")
print(f"\n(tok/s, GFLOP/s, MFU: the profiled steps, with the profiler's hooks; run tok/s: every "
      f"step of the run, the 2 warm-up steps included)\nin {out}/train_step.json")
EOF

#!/usr/bin/env bash
# The CPU training step of each recipe, profiled (`moelab run --profile`): tokens/s, achieved
# GFLOP/s and MFU against the machine's GEMM peak, and where the step's time goes, side by side
# for every recipe in one run. Run it on an idle machine: other work slows the step and the peak.
#
#   tools/bench/train_step.sh [--steps N (default 30)] [--out DIR] [--baseline MOELAB]
#       [--peak-seconds S (default 20)] [RECIPE...]
#       (default recipes: recipes/quickstart.toml recipes/perf/wide.toml)
#
# First `moelab peak --seconds S` measures the machine's GEMM peak for S seconds and raises the
# cached best (a short measurement can land in a second the machine's neighbours took, and every
# MFU would then be too high); every row's MFU is against that one peak, the baseline's too.
#
# --baseline: another build's moelab binary (an earlier commit built in its own tree, with its
# plugins): each recipe runs under it and under this tree's build, one after the other, and the
# table gives both and their ratio. Measured in one run, the machine's state is the same for both.
# The baseline's GFLOP/s are this build's model FLOPs per token times its tokens/s: the same model,
# whatever FLOP count the older build had.
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
peak_seconds=20
recipes=()
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --peak-seconds) peak_seconds=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) recipes+=("$1"); shift ;;
    esac
done
if ! [[ "$steps" =~ ^[0-9]+$ ]] || [ "$steps" -lt 3 ]; then
    echo "train_step.sh: --steps needs a whole number of at least 3, got '$steps'" >&2
    exit 2
fi
if ! [[ "$peak_seconds" =~ ^[0-9]+$ ]]; then
    echo "train_step.sh: --peak-seconds needs a whole number of seconds, got '$peak_seconds'" >&2
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

if [ -n "${MOELAB_GEMM_PEAK_GFLOPS:-}" ]; then
    # The runs take their peak from the override, so the table does too (nothing measured).
    echo "== the GEMM peak from MOELAB_GEMM_PEAK_GFLOPS: $MOELAB_GEMM_PEAK_GFLOPS GFLOP/s"
    peak=$MOELAB_GEMM_PEAK_GFLOPS
else
    echo "== the machine's GEMM peak, measured for ${peak_seconds} s"
    peak_text=$("$moelab" peak --seconds "$peak_seconds")
    echo "$peak_text"
    peak=$(sed -n 's/^the reference of MFU from now on: \([0-9.]*\) GFLOP\/s.*/\1/p' <<<"$peak_text")
fi
if [ -z "$peak" ]; then
    echo "train_step.sh: moelab peak printed no reference peak" >&2
    exit 1
fi

runs=()
profile_run() {  # BINARY LABEL RECIPE
    local dir="$out/$2"
    rm -rf "$dir"
    echo "== $2: $3, $steps steps, profiled after 2 ($1)"
    # Run where the recipe's relative data paths resolve: the repository root.
    # On the CPU whatever the machine has: the step and the peak above are the CPU's.
    (cd "$root" && "$1" run "$3" --profile --out "$dir" --set "train.device=cpu" \
        --set "train.steps=$steps" \
        --set "train.warmup_steps=2" --set "train.eval_every=0" --set "train.log_every=$steps" \
        --set "eval.max_batches=1") | sed -n '/^profile of/,/^step  /p'
    runs+=("$2=$dir")
}
for recipe in "${recipes[@]}"; do
    name=$(basename "$recipe" .toml)
    if [ -n "$baseline" ]; then profile_run "$baseline" "$name-baseline" "$recipe"; fi
    profile_run "$moelab" "$name" "$recipe"
done

/usr/bin/python3 - "$out" "$peak" "${runs[@]}" <<'EOF'
import json, sys
out, peak, runs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
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
# One model, one FLOP count: a baseline row's GFLOP/s are this build's FLOPs per token times the
# baseline's tokens/s; every MFU is against the one peak measured above.
by_name = {r["recipe"]: r for r in rows}
baselines = {name + "-baseline" for name, _ in (run.split("=", 1) for run in runs)
             if not name.endswith("-baseline")}
for r in rows:
    if r["recipe"] in baselines:
        own = by_name.get(r["recipe"][: -len("-baseline")])
        ok = own and own["gflops"] is not None and own["tokens_per_s"] > 0
        r["gflops"] = own["gflops"] / own["tokens_per_s"] * r["tokens_per_s"] if ok else None
    r["run_mfu"] = r["mfu"]  # against the peak the run itself read
    r["mfu"] = r["gflops"] / peak if r["gflops"] is not None else None
json.dump({"gemm_peak_gflops": peak, "runs": rows}, open(f"{out}/train_step.json", "w"), indent=2)
print()
print(f"MFU against the GEMM peak of {peak:.1f} GFLOP/s")
print(f"{'run':<20} {'ms/step':>9} {'tok/s':>8} {'run tok/s':>10} {'GFLOP/s':>8} {'MFU':>6}  largest shares")
for r in rows:
    top = ", ".join(f"{n} {100 * s:.0f}%" for n, s in r["top"])
    gflops = f"{r['gflops']:.1f}" if r["gflops"] is not None else "n/a"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
    print(f"{r['recipe']:<20} {r['ms_per_step']:>9.1f} {r['tokens_per_s']:>8.0f} "
          f"{r['run_tokens_per_s']:>10.0f} {gflops:>8} {mfu:>6}  {top}")
for r in rows:
    base = by_name.get(r["recipe"] + "-baseline")
    if base:
        print(f"{r['recipe']}: {base['ms_per_step'] / r['ms_per_step']:.3f}x the baseline's speed "
              f"({base['tokens_per_s']:.0f} -> {r['tokens_per_s']:.0f} tokens/s)")
print(f"\n(tok/s, GFLOP/s, MFU: the profiled steps, with the profiler's hooks; run tok/s: every "
      f"step of the run, the 2 warm-up steps included)\nin {out}/train_step.json")
EOF

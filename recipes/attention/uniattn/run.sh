#!/usr/bin/env bash
# The UniAttn experiment at small scale (docs/attention.md): an 8-layer RoPE base model, then
# UniAttn on its upper half (one SuperBlock of 4: anchor 4, reuse 5-7) evaluated without
# compensation, after the closed-form init of W_c, after stage 1 (W_c only) and after stage 2
# (everything); beside it the base post-trained the same 300 steps, UniAttn post-trained in one
# stage, and the baselines: cross-layer KV sharing on the same SuperBlock (post-trained like
# UniAttn) and GQA with 2 KV heads (from scratch, as many steps). Validation perplexity over the
# whole split, and from `moelab generate --stats`: attention FLOPs and KV-cache bytes per token at
# a 258-token context and decode time per token. Run from the repository root after
# tools/setup.sh; writes runs/uniattn/ and prints the table (also runs/uniattn/table.md). Finished
# runs are reused; remove runs/uniattn to start over.
set -euo pipefail
cd "$(dirname "$0")/../../.."
moelab=build/bin/moelab
dir=recipes/attention/uniattn
out=runs/uniattn
start=$(date +%s)

run() {  # run NAME RECIPE [--set ...]: train unless a finished run is there
    local name=$1 recipe=$2
    shift 2
    if [[ ! -f $out/$name/summary.json ]]; then
        rm -rf "${out:?}/$name"
        "$moelab" run "$dir/$recipe" --out "$out/$name" "$@"
    fi
}

run base base.toml
run continued continued.toml
run no-compensation as-initialised.toml
run closed-form as-initialised.toml --set init.calibration_samples=64
run two-stage two-stage.toml
# The same with W_c fitted over every token instead of position-wise means (the variant).
run closed-form-tokens as-initialised.toml --set init.calibration_samples=64 \
    --set 'attention.calibration_fit="tokens"'
run two-stage-tokens two-stage.toml --set 'attention.calibration_fit="tokens"'
run one-stage uniattn.toml
run kv-sharing uniattn.toml --set 'attention.share="key_value"'
run gqa gqa.toml

# name|what is evaluated|what generate measures
rows=(
    "base|base|base"
    "continued|continued|continued"
    "no-compensation|no-compensation|no-compensation"
    "closed-form|closed-form|closed-form"
    "stage-1|two-stage/checkpoints/step-100|two-stage"
    "two-stage|two-stage|two-stage"
    "closed-form-tokens|closed-form-tokens|closed-form-tokens"
    "stage-1-tokens|two-stage-tokens/checkpoints/step-100|two-stage-tokens"
    "two-stage-tokens|two-stage-tokens|two-stage-tokens"
    "one-stage|one-stage|one-stage"
    "kv-sharing|kv-sharing|kv-sharing"
    "gqa|gqa|gqa"
)
for row in "${rows[@]}"; do
    IFS='|' read -r name target _ <<< "$row"
    if [[ ! -f $out/eval-$name.json ]]; then
        "$moelab" eval "$out/$target" --split validation --json > "$out/eval-$name.json.tmp"
        mv "$out/eval-$name.json.tmp" "$out/eval-$name.json"
    fi
done
for run_name in base continued no-compensation closed-form two-stage closed-form-tokens \
    two-stage-tokens one-stage kv-sharing gqa; do
    if [[ ! -f $out/generate-$run_name.txt ]]; then
        "$moelab" generate "$out/$run_name" --prompt "The" --max-new 255 --temperature 0 \
            --stats > "$out/generate-$run_name.txt.tmp"
        mv "$out/generate-$run_name.txt.tmp" "$out/generate-$run_name.txt"
    fi
done

python3 - "$out" "${rows[@]}" <<'PY' | tee "$out/table.md"
import json, sys
out, rows = sys.argv[1], [r.split("|") for r in sys.argv[2:]]
names = {
    "base": "base (RoPE, 600 steps)",
    "continued": "base post-trained 300 more steps",
    "no-compensation": "UniAttn, W_c = 0, not trained",
    "closed-form": "UniAttn, closed-form W_c (position-wise means), not trained",
    "stage-1": "UniAttn two-stage, after stage 1 (W_c only, 100 steps)",
    "two-stage": "UniAttn two-stage, after stage 2 (all, 200 steps)",
    "closed-form-tokens": "UniAttn, closed-form W_c (every token), not trained",
    "stage-1-tokens": "UniAttn two-stage from the token-level fit, after stage 1",
    "two-stage-tokens": "UniAttn two-stage from the token-level fit, after stage 2",
    "one-stage": "UniAttn one stage (all, 300 steps, W_c from 0)",
    "kv-sharing": "cross-layer KV sharing on the same SuperBlock, 300 steps",
    "gqa": "GQA, 2 KV heads, from scratch (900 steps)",
}
def generated(run):
    records = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    return [r for r in records if r.get("type") == "generate"][-1]
base = generated("base")
print("| model | val ppl | attention FLOPs/token | KV bytes/token | decode ms/token |")
print("|---|---:|---:|---:|---:|")
for name, target, run in rows:
    ppl = json.load(open(f"{out}/eval-{name}.json"))["ppl"]
    g = generated(run)
    flops = g["attention_flops_per_token"]
    kv = g["kv_cache_bytes_per_token"]
    ms = 1000.0 / g["decode_tokens_per_second"]
    bms = 1000.0 / base["decode_tokens_per_second"]
    print(f"| {names[name]} | {ppl:.3f} | {flops / 1e6:.3f}M ({flops / base['attention_flops_per_token']:.2f}x) "
          f"| {kv} ({kv / base['kv_cache_bytes_per_token']:.2f}x) | {ms:.3f} ({ms / bms:.2f}x) |")
PY
echo "wall time: $(( $(date +%s) - start )) s"

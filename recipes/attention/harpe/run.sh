#!/usr/bin/env bash
# The HARPE experiment at small scale (docs/attention.md): pretrain at 256 tokens, continue once at
# 2048 with each method on the same token budget, then evaluate every model with sliding-window
# perplexity (stride 256, as the paper) at 256, 512, 1024 and 2048 tokens and the passkey test at
# those lengths. Run from the repository root after tools/setup.sh; writes runs/harpe/ and prints
# the table (also runs/harpe/table.md). Finished runs are reused; remove runs/harpe to start over.
set -euo pipefail
cd "$(dirname "$0")/../../.."
moelab=build/bin/moelab
dir=recipes/attention/harpe
out=runs/harpe
start=$(date +%s)

run() {  # run NAME RECIPE: train unless a finished run is there
    if [[ ! -f $out/$1/summary.json ]]; then
        rm -rf "${out:?}/$1"
        "$moelab" run "$dir/$2" --out "$out/$1"
    fi
}

run pretrain pretrain.toml
run rope extend-rope.toml
run pi extend-pi.toml
run abf extend-abf.toml
run abf-multi extend-abf-multi.toml
run harpe extend-harpe.toml
run harpe-uniform extend-harpe-uniform.toml

methods=(pretrain rope pi abf abf-multi harpe harpe-uniform)
for m in "${methods[@]}"; do
    if [[ ! -f $out/$m/long_context.json ]]; then
        "$moelab" eval "$out/$m" --split validation --context 256,512,1024,2048 --stride 256 \
            --passkey --json > "$out/$m/long_context.json.tmp"
        mv "$out/$m/long_context.json.tmp" "$out/$m/long_context.json"
    fi
done

python3 - "$out" "${methods[@]}" <<'PY' | tee "$out/table.md"
import json, sys
out, methods = sys.argv[1], sys.argv[2:]
names = {"pretrain": "pretrained at 256 (RoPE 10k), no extension",
         "rope": "RoPE unchanged", "pi": "PI (scale 8)", "abf": "ABF single (500k)",
         "abf-multi": "ABF multi-stage (100k@512, 200k@1024, 500k@2048)",
         "harpe": "HARPE (searched bases)", "harpe-uniform": "HARPE (uniform bases)"}
lengths = [256, 512, 1024, 2048]
print("| method | " + " | ".join(f"ppl@{n}" for n in lengths) + " | " +
      " | ".join(f"passkey@{n}" for n in lengths) + " |")
print("|---" * (1 + 2 * len(lengths)) + "|")
for m in methods:
    r = json.load(open(f"{out}/{m}/long_context.json"))
    ppl = {row["context"]: row["ppl"] for row in r["perplexity"]}
    acc = {}
    for cell in r["passkey"]["cells"]:
        acc.setdefault(cell["length"], [0, 0])
        acc[cell["length"]][0] += cell["correct"]
        acc[cell["length"]][1] += cell["trials"]
    def pk(n):
        c, t = acc.get(n, [0, 0])
        return f"{100 * c / t:.0f}%" if t else "n/a"
    print(f"| {names[m]} | " + " | ".join(f"{ppl[n]:.3f}" for n in lengths) + " | " +
          " | ".join(pk(n) for n in lengths) + " |")
PY
echo "wall time: $(( $(date +%s) - start )) s"

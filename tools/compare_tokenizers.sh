#!/usr/bin/env bash
# Trains the quickstart model with each tokenizer recipe (recipes/tokenizers/*.toml) and prints the
# table of docs/tokenizers.md: bits per byte of the validation text (comparable across
# tokenizers), per-token perplexity (not comparable), and the tokenizer statistics of
# `moelab tokenizer stats` on the same text.
#
# Usage: tools/compare_tokenizers.sh [--steps N] [--out runs/tokenizers] [--reuse]
#   --reuse  keep finished runs in OUT (those with a summary.json) instead of training again
set -euo pipefail
cd "$(dirname "$0")/.."

steps="" out="runs/tokenizers" reuse=0
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --reuse) reuse=1; shift ;;
        *) echo "usage: $0 [--steps N] [--out DIR] [--reuse]" >&2; exit 2 ;;
    esac
done

moelab=build/bin/moelab
recipes=(quickstart.toml tokenizers/bpe.toml tokenizers/lbpe.toml tokenizers/scaffold-bpe.toml)
for recipe in "${recipes[@]}"; do
    name="$(basename "$recipe" .toml)"
    [ "$name" = quickstart ] && name=bytes
    dir="$out/$name"
    if [ "$reuse" = 1 ] && [ -f "$dir/summary.json" ]; then
        echo "== $name: reusing $dir"
        continue
    fi
    rm -rf "$dir"
    echo "== $name: moelab run recipes/$recipe"
    set_steps=()
    [ -n "$steps" ] && set_steps=(--set "train.steps=$steps")
    "$moelab" run "recipes/$recipe" --out "$dir" "${set_steps[@]}" | tail -n 3
done

python3 - "$out" "$moelab" <<'PY'
import json, pathlib, subprocess, sys
out, moelab = pathlib.Path(sys.argv[1]), sys.argv[2]
validation = "data/brown/validation.txt"
print("| tokenizer | vocab | val tokens | bytes/token | entropy (bits) | redundancy | scaffold tokens | per-token ppl | bits/byte | tokens/s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in ["bytes", "bpe", "lbpe", "scaffold-bpe"]:
    run = out / name
    summary = json.loads((run / "summary.json").read_text())
    component = next(p["component"] for p in summary["plugins"] if p["section"] == "tokenizer")
    stats = json.loads(subprocess.run(
        [moelab, "tokenizer", "stats", "--json", "--as", component, str(run / "tokenizer.txt"),
         validation], check=True, capture_output=True, text=True).stdout)
    scaffold = stats["facts"].get("scaffold tokens", "-").replace(" of the expanded vocabulary", "")
    v = summary["validation"]
    print(f"| {name} | {stats['vocab_size']} | {v['tokens']} | {stats['bytes_per_token']:.3f} | "
          f"{stats['entropy_bits']:.3f} | {stats['redundancy']:.4f} | {scaffold} | {v['ppl']:.2f} | "
          f"{v['bits_per_byte']:.4f} | {summary['tokens_per_second']:.0f} |")
PY

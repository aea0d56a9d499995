#!/usr/bin/env bash
# Data at scale, side by side in one run: `moelab run` of the quickstart recipe for one training
# step on Brown and on synthetic corpora (Brown repeated, tools/make_synthetic_corpus.sh), each
# once cold (tokenizer training and encoding included) and once warm (cache present). Prints
# peak resident memory, wall time, and the start-up the run records (data ready, first step
# ready; LibTorch's own start excluded), then deletes the corpora and caches.
#
#   bash tools/bench/data_scale.sh [SIZE_MB ...]      (default: 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("${@:-1000 10000}")
# shellcheck disable=SC2206  # the default is a list
sizes=(${sizes[@]})
work=$(mktemp -d /tmp/moelab-data-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT  # a directory of our own: corpora, caches, runs
moelab=build/bin/moelab

corpora=("data/brown")
for size in "${sizes[@]}"; do
    bash tools/make_synthetic_corpus.sh "$work/corpus-$size" "$size" >/dev/null
    corpora+=("$work/corpus-$size")
done

printf '%-28s %-5s %10s %10s %10s %10s\n' corpus start "peak MiB" "wall s" "data s" "setup s"
for corpus in "${corpora[@]}"; do
    name=$(basename "$corpus")
    cache="$work/cache-$name"
    for start in cold warm; do
        out="$work/run-$name-$start"
        /usr/bin/time -f '%M %e' -o "$work/time" "$moelab" run recipes/quickstart.toml \
            --set "data.corpus=\"$corpus\"" --set "data.cache_dir=\"$cache\"" \
            --set train.steps=1 --set train.warmup_steps=0 --out "$out" >"$work/log" 2>&1 ||
            { cat "$work/log"; exit 1; }
        read -r peak_kb wall <"$work/time"
        startup=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("type") == "run":
        print(r["startup_s"]["data"], r["startup_s"]["total"]); break' "$out/metrics.jsonl")
        read -r data_s setup_s <<<"$startup"
        printf '%-28s %-5s %10.0f %10.1f %10.2f %10.2f\n' "$name ($(du -m "$corpus/train.txt" |
            cut -f1) MB)" "$start" "$((peak_kb / 1024))" "$wall" "$data_s" "$setup_s"
    done
done

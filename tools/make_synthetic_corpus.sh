#!/usr/bin/env bash
# A large corpus for the data benchmarks, made from the Brown corpus repeated (no download):
#
#   bash tools/make_synthetic_corpus.sh OUT_DIR SIZE_MB
#
# OUT_DIR/train.txt is data/brown/train.txt repeated until it reaches SIZE_MB megabytes;
# validation.txt and test.txt are Brown's own, so evaluation is the same as on Brown. Delete the
# directory afterwards; nothing refers to it.
set -euo pipefail
out=${1:?usage: make_synthetic_corpus.sh OUT_DIR SIZE_MB}
out=$(realpath -m "$out")  # relative to the caller's directory
cd "$(dirname "$0")/.."
size_mb=${2:?usage: make_synthetic_corpus.sh OUT_DIR SIZE_MB}
source=data/brown
[[ -f $source/train.txt ]] || { echo "$source/train.txt is missing: run tools/setup.sh" >&2; exit 2; }
mkdir -p "$out"
cp "$source/validation.txt" "$source/test.txt" "$out/"
target=$((size_mb * 1000 * 1000))
chunk=$(stat -c %s "$source/train.txt")
: >"$out/train.txt"
written=0
while ((written < target)); do
    # Documents are separated by blank lines: keep one between copies.
    cat "$source/train.txt" >>"$out/train.txt"
    printf '\n' >>"$out/train.txt"
    written=$((written + chunk + 1))
done
echo "$out/train.txt: $(stat -c %s "$out/train.txt") bytes"

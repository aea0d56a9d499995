#!/usr/bin/env bash
# Installs the SDK from the build tree, builds sdk/examples/expert-choice against the installed
# copy only, and checks that moelab discovers it, documents it and resolves a recipe using it.
# Usage: build_example.sh BUILD_DIR SOURCE_DIR WORK_DIR TORCH_DIR MOELAB_BINARY
set -euo pipefail
build_dir=$1 source_dir=$2 work=$3 torch_dir=$4 moelab=$5

rm -rf "$work"
mkdir -p "$work"
# The documented install command (README: "Writing a plugin"), which leaves the build tree alone.
bash "$source_dir/tools/install_sdk.sh" "$work/install" "$build_dir" >/dev/null
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$source_dir/sdk/examples/expert-choice" -B "$work/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/install" -DTorch_DIR="$torch_dir" \
    "${launcher[@]}" >/dev/null
cmake --build "$work/build"

plugin="$work/build/moelab-plugin-expert-choice-example.so"
test -f "$plugin" || { echo "FAIL: $plugin was not built"; exit 1; }
exported=$(nm -D --defined-only "$plugin" | awk '{print $3}')
[ "$exported" = "moelab_plugin_entry" ] ||
    { echo "FAIL: the plugin exports more than its entry point: $exported"; exit 1; }

listing=$(MOELAB_PLUGIN_PATH="$work/build" "$moelab" plugins)
echo "$listing"
grep -q "^expert-choice-example .*router .*0.1.0 .*moelab-plugin-expert-choice-example.so" <<<"$listing" ||
    { echo "FAIL: expert-choice-example not listed"; exit 1; }
info=$(MOELAB_PLUGIN_PATH="$work/build" "$moelab" plugins info expert-choice-example)
grep -q "experts_per_token (float, \[0.01, 1024\]), default 2.0" <<<"$info" ||
    { echo "FAIL: schema not shown"; echo "$info"; exit 1; }

# A recipe can use it, through the recipe's own plugin search path.
mkdir -p "$work/run/corpus"
for split in train validation test; do echo "some text" >"$work/run/corpus/$split.txt"; done
(cd "$work/run" && "$moelab" check "$source_dir/tests/recipes/base.toml" \
    --set router.plugin=expert-choice-example --set router.experts_per_token=1.5 \
    --set "plugins.search_path=[\"$work/build\"]" >resolved.toml)
grep -q 'plugin = "expert-choice-example"' "$work/run/resolved.toml" ||
    { echo "FAIL: recipe did not resolve the example"; exit 1; }
echo "PASS: example plugin built out of tree, listed, documented and resolved"

# `moelab new` projects build unchanged against the installed SDK and pass the conformance kit.
for kind in router block attention tokenizer; do
    "$moelab" new "$kind" "my-$kind" --dir "$work/new" >/dev/null
    cmake -S "$work/new/my-$kind" -B "$work/new/my-$kind/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$work/install" -DTorch_DIR="$torch_dir" "${launcher[@]}" >/dev/null
    cmake --build "$work/new/my-$kind/build" >/dev/null
    kit=$(MOELAB_PLUGIN_PATH="$work/new/my-$kind/build" "$moelab" plugins test "my-$kind") ||
        { echo "FAIL: my-$kind does not pass the conformance kit"; echo "$kit"; exit 1; }
    echo "$kit"
    case $kind in
    router | block)
        grep -q "perturbation disable_top .*pass" <<<"$kit" ||
            { echo "FAIL: my-$kind does not honour disable_top"; exit 1; } ;;
    tokenizer)
        grep -q "lossless round trip .*pass" <<<"$kit" ||
            { echo "FAIL: my-$kind does not round-trip"; exit 1; } ;;
    esac
    (cd "$work/run" && "$moelab" check "$work/new/my-$kind/recipe.toml" \
        --set data.corpus=corpus --set data.cache_dir=cache >/dev/null) ||
        { echo "FAIL: the recipe of my-$kind does not resolve"; exit 1; }
done
echo "PASS: moelab new router, block, attention and tokenizer build against the installed SDK and pass the kit"

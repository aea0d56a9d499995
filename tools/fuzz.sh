#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz (clang, into build-fuzz/) and runs each for a bounded
# time on a scratch copy of its seed corpus and saved regressions (tests/fuzz/README.md).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]    (default: every target)
#
# Prints one summary line per target (executions, coverage); inputs that crashed, leaked, timed out
# or ran out of memory are saved under build-fuzz/findings/<target>/, and the script then exits 1.
# Environment: CXX (default clang++), JOBS (build parallelism, default nproc), FUZZ_ARGS (extra
# libFuzzer flags, e.g. "-jobs=4 -workers=4").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-fuzz"
all_targets=(recipe safetensors checkpoint_state checkpoint_index tokenizer_file comparison_file
    corpus_file)

seconds=${1:-60}
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]  (targets: ${all_targets[*]})" >&2
    exit 2
fi
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
    if [ ! -f "$root/tests/fuzz/${target}_fuzzer.cpp" ]; then
        echo "fuzz.sh: unknown target '$target' (targets: ${all_targets[*]})" >&2
        exit 2
    fi
done

# --- build ---------------------------------------------------------------------------------
build_start=$SECONDS
if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="${CXX:-clang++}"
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]/%/_fuzzer}"
build_seconds=$((SECONDS - build_start))

# --- run -----------------------------------------------------------------------------------
# Stack traces for UBSan reports too; ASan and LSan print theirs anyway.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
summary=()
found=()
run_start=$SECONDS
for target in "${targets[@]}"; do
    work="$build/run/$target"
    findings="$build/findings/$target"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$findings"
    # The corpus grows while fuzzing; the committed seeds stay as they are.
    for dir in "$root/tests/fuzz/seeds/$target" "$root/tests/fuzz/regressions/$target"; do
        if [ -d "$dir" ]; then
            find "$dir" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$work/corpus/" \;
        fi
    done
    dict=()
    if [ -f "$root/tests/fuzz/$target.dict" ]; then dict=(-dict="$root/tests/fuzz/$target.dict"); fi
    touch "$work/started"
    echo "== $target: fuzzing for ${seconds}s (log: ${work#"$root"/}/fuzz.log)"
    status=0
    # -artifact_prefix: libFuzzer writes crash-*, leak-*, timeout-*, oom-* there.
    (cd "$work" && "$build/${target}_fuzzer" corpus "${dict[@]}" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
        -artifact_prefix="$findings/" ${FUZZ_ARGS:-}) >"$work/fuzz.log" 2>&1 || status=$?

    log="$work/fuzz.log"
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n1 |
                 grep -o '[0-9]*$' || true)
    if [ -z "$executions" ]; then  # no final stats (e.g. killed): the last status line's count
        executions=$(grep -o '^#[0-9]*' "$log" | tail -n1 | tr -d '#' || true)
    fi
    coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n1 || true)
    corpus_size=$(find "$work/corpus" -type f | wc -l)
    new=$(find "$findings" -maxdepth 1 -type f -newer "$work/started" \
          \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
    line=$(printf '%-17s executions %10s   %-22s corpus %5s files' "$target" "${executions:-?}" \
           "${coverage:-cov: ? ft: ?}" "$corpus_size")
    if [ -n "$new" ] || [ "$status" -ne 0 ]; then
        if [ -n "$new" ]; then
            line+="   FOUND (libFuzzer exit $status)"
        else
            line+="   FAILED (libFuzzer exit $status, no input saved; see the log)"
        fi
        found+=("$target")
        while IFS= read -r file; do
            [ -n "$file" ] && line+=$'\n'"    ${file#"$root"/}"
        done <<<"$new"
        # The report: the sanitizer's, the invariant's or the uncaught exception's message and the
        # top frames, shortened (template names fill whole lines).
        grep -m1 -A14 -E '^==[0-9]+== ?ERROR|runtime error|invariant violated|terminate called' \
            "$log" | cut -c1-200 | sed 's/^/    | /' || true
    fi
    summary+=("$line")
done
run_seconds=$((SECONDS - run_start))

echo
echo "fuzz summary (${seconds}s per target; build ${build_seconds}s, fuzzing ${run_seconds}s):"
printf '%s\n' "${summary[@]}"
if [ ${#found[@]} -gt 0 ]; then
    cat <<EOF

Findings in: ${found[*]}. Reproduce one with the fuzzer (it runs the file once):
    build-fuzz/<target>_fuzzer build-fuzz/findings/<target>/<file>
and, once the cause is understood, keep it as a regression test (replayed by ctest in the main
build and as a seed here):
    cp build-fuzz/findings/<target>/<file> tests/fuzz/regressions/<target>/<short-name>
EOF
    exit 1
fi

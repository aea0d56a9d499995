#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU, nvcc and PyTorch 2.x (whose
# LibTorch moelab builds against): configures with the `cuda` preset, builds, runs the CUDA and
# kernel tests and the GPU benchmarks, and writes every log to $OUT (default ./gpu-check/).
#
#   bash tools/gpu_check.sh
#
# Without network access, carry the other dependencies as Debian packages in .deps/ (toml++, fmt,
# Boost, GoogleTest, CLI11, nlohmann-json, Gloo, zlib and zstd headers; see DEVELOPERS.md): they are unpacked to
# $DEPS (default /tmp/deps) and added to CMAKE_PREFIX_PATH. The benchmarks print the MoE layer's
# time and TFLOP/s as ratios to cuBLAS dense GEMM measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/gpu-check}
deps=${DEPS:-/tmp/deps}
build=${BUILD:-/tmp/moelab-cuda}
mkdir -p "$out" "$deps"
if compgen -G ".deps/*.deb" >/dev/null; then
    for package in .deps/*.deb; do dpkg -x "$package" "$deps"; done
fi
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
nvidia-smi 2>&1 | tee "$out/nvidia-smi.log" || true

cmake --preset cuda -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" \
    2>&1 | tee "$out/configure.log"
cmake --build "$build" -j"$(nproc)" 2>&1 | tee "$out/build.log" | tail -5

# CUDA tests, the kernel tests (every kernel x shape family) and the tiny CUDA run.
ctest --test-dir "$build" -R "Cuda|EveryKernel|GroupedSwiglu|PlanRouting|ExpertBank|TinyRun" \
    --output-on-failure 2>&1 | tee "$out/tests.log" | tail -20 || echo "some tests failed: $out/tests.log"

# Expert parallelism on CUDA: the distributed tests over Gloo (CPU tensors, as in CI), then the
# tiny recipe with its experts on the GPU through NCCL, one process per GPU (with one GPU, the
# one-process path; NCCL needs a GPU per process), compared with one process.
ctest --test-dir "$build" -R "Dist|DifferentiableAllToAll|ShardedExpertBank|ProcessGroup|ParallelRun" \
    --output-on-failure 2>&1 | tee "$out/parallel-tests.log" | tail -5 || true
gpus=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || echo 0)
parallel_dir=$(mktemp -d /tmp/moelab-nccl-XXXXXX)
if [ -d data/brown ]; then
    for n in 1 "$gpus"; do
        [ "$n" -ge 1 ] || continue
        "$build/bin/moelab" launch -n "$n" -- run recipes/quickstart.toml --out "$parallel_dir/n$n" \
            --set train.device=cuda --set train.steps=50 --set parallel.expert="$n" \
            2>&1 | tee -a "$out/nccl.log" | tail -3 || echo "launch -n $n on cuda failed" | tee -a "$out/nccl.log"
    done
fi

# Decoding on CUDA through the caches (float32, then bfloat16 autocast), with the speed-up against
# recomputation; the one-process run above is the model.
if [ -d "$parallel_dir/n1" ]; then
    for dtype in float32 bfloat16; do
        "$build/bin/moelab" generate "$parallel_dir/n1" --prompt "The jury said" --max-new 256 \
            --stats --set model.dtype="$dtype" 2>&1 | tee -a "$out/generate.log" | tail -6 ||
            echo "generate on cuda ($dtype) failed" | tee -a "$out/generate.log"
    done
fi

# The shapes of the kernels issue: SonicMoE's, Mixtral-like, and the project's benchmark shape.
shapes=("--tokens 32768 --d-model 4096 --d-ff 1024 --experts 64 --k 4"
        "--tokens 8192 --d-model 4096 --d-ff 14336 --experts 8 --k 2"
        "--tokens 8192 --d-model 512 --d-ff 1024 --experts 8 --k 2")
# Every CUDA kernel: the reference and grouped_cuda in fp32 and bf16, grouped_mm in bf16 (the only
# dtype it takes).
for shape in "${shapes[@]}"; do
    for run in "reference 0" "reference 1" "grouped_mm 1" "grouped_cuda 0" "grouped_cuda 1"; do
        read -r kernel bf16 <<<"$run"
        # shellcheck disable=SC2086  # the shape is a list of flags
        "$build/bin/moelab_bench_moe" --device cuda --kernel "$kernel" --bf16 "$bf16" \
            --rounds 5 $shape 2>&1 | tee -a "$out/bench.log" ||
            echo "moelab_bench_moe --kernel $kernel --bf16 $bf16 $shape failed" | tee -a "$out/bench.log"
    done
done
echo "logs in $out"

#pragma once

// glibc's allocator, tuned for training: keep freed memory for reuse instead of handing every
// large block back to the kernel. By default glibc serves blocks above 128 KiB-32 MiB (its
// threshold adapts) with mmap and trims the heap top after every large free, so each step's
// activations and gradients are page-faulted in afresh. Measured on the 2-core CPU machine with
// recipes/compare/robustness/smoe-share.toml (20 steps): 1.7k -> 4.5k tokens/s, system time
// 24.6 s -> 11.0 s, bit-identical losses. glibc refuses mmap thresholds above 32 MiB, so blocks
// larger than that (activations and gradients of 64-128 MiB at moelab_bench_moe's benchmark
// shape) were still mapped afresh on every call until mmap was switched off for the heap as well:
// measured there, MoE layer forward + backward 1343 ms -> 1123 ms (64% -> 81% of the sgemm peak),
// the dense FFN 2313 ms -> 1204 ms. The cost is that the process keeps its peak heap.

namespace moelab::core {

// Sets M_MMAP_MAX to 0 (blocks of every size come from the heap and are reused), M_MMAP_THRESHOLD
// to 32 MiB, M_TRIM_THRESHOLD to 2 GiB and M_TOP_PAD to 256 MiB, unless the user tuned glibc's
// allocator (any MALLOC_*_ variable or GLIBC_TUNABLES), which then wins. Call once, first thing in
// main(). glibc falls back to mapping memory itself when the heap cannot grow.
void tune_allocator_for_training();

}  // namespace moelab::core

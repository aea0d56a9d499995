#pragma once

// CPU thread settings. LibTorch's intra-op pool and OpenBLAS's own pool are separate: on a small
// machine both at full width oversubscribe the cores. See docs/threads.md for the measurements
// behind the defaults.

#include <cstdint>

namespace moelab::core {

struct ThreadSettings {
    int intra_op = 0;  // LibTorch intra-op threads
    int blas = 0;      // OpenBLAS threads; 0 when OpenBLAS is not loaded
};

ThreadSettings current_threads();

// The measured default for `cores` hardware threads (docs/threads.md).
ThreadSettings default_threads(int cores);

// Applies `settings`; a value <= 0 leaves that pool unchanged. The first call also shortens how
// long OpenBLAS's idle threads spin (kBlasIdleSpinLog2), unless OPENBLAS_THREAD_TIMEOUT says
// otherwise: make that call at a command's start, while no other thread uses the BLAS or reads
// the environment (kernels/binding/blas_threads.h).
void apply_threads(const ThreadSettings& settings);

// OpenBLAS's idle threads spin for 2^20 cycles (about 0.4 ms) for the next product, then sleep;
// its default is 2^28 (about 0.1 s). Long enough for the products LibTorch runs back to back, short
// enough that a spinning worker has gone to sleep soon after the host's own threads start their
// side-by-side tasks and passes (kernels/binding/blas_threads.h). docs/threads.md has the sweep.
inline constexpr int kBlasIdleSpinLog2 = 20;

// The recipe's choice (train.intra_op_threads, train.blas_threads), measured defaults for zeros.
// `processes`: how many processes of one job share this machine's cores (expert and data
// parallelism); the defaults split the cores among them.
ThreadSettings recipe_threads(std::int64_t intra_op, std::int64_t blas, int processes = 1);

int hardware_threads();

}  // namespace moelab::core

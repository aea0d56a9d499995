#pragma once

// CPU thread settings. LibTorch's intra-op pool and OpenBLAS's own pool are separate: on a small
// machine both at full width oversubscribe the cores. See docs/threads.md for the measurements
// behind the defaults.

namespace moelab::core {

struct ThreadSettings {
    int intra_op = 0;  // LibTorch intra-op threads
    int blas = 0;      // OpenBLAS threads; 0 when OpenBLAS is not loaded
};

ThreadSettings current_threads();

// The measured default for `cores` hardware threads (docs/threads.md).
ThreadSettings default_threads(int cores);

// Applies `settings`; a value <= 0 leaves that pool unchanged.
void apply_threads(const ThreadSettings& settings);

// The recipe's choice (train.intra_op_threads, train.blas_threads), measured defaults for zeros.
// `processes`: how many processes of one job share this machine's cores (expert and data
// parallelism); the defaults split the cores among them.
ThreadSettings recipe_threads(std::int64_t intra_op, std::int64_t blas, int processes = 1);

int hardware_threads();

}  // namespace moelab::core

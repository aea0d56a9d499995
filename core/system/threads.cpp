#include "core/system/threads.h"

#include <algorithm>
#include <thread>

#include <ATen/Parallel.h>

#include "kernels/binding/blas_threads.h"

namespace moelab::core {

int hardware_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

ThreadSettings current_threads() {
    ThreadSettings settings;
    settings.intra_op = at::get_num_threads();
    settings.blas = kernels::binding::blas_threads();
    return settings;
}

ThreadSettings default_threads(int cores) {
    // Matrix products dominate and OpenBLAS parallelises them well; LibTorch's intra-op pool runs
    // the elementwise kernels in between. Both pools spin while idle, so giving both every core
    // oversubscribes the machine: on 2 cores the quickstart trains at 1.5k tokens/s with (2, 2)
    // and 3.3k with (1, 2) (docs/threads.md, tools/bench/train_threads_bench.cpp).
    return ThreadSettings{1, cores};
}

void apply_threads(const ThreadSettings& settings) {
    static const bool spin_set [[maybe_unused]] =
        kernels::binding::set_blas_idle_spin(kBlasIdleSpinLog2);
    if (settings.intra_op > 0) at::set_num_threads(settings.intra_op);
    if (settings.blas > 0) kernels::binding::set_blas_threads(settings.blas);
}

}  // namespace moelab::core

namespace moelab::core {

ThreadSettings recipe_threads(std::int64_t intra_op, std::int64_t blas, int processes) {
    const ThreadSettings fallback =
        default_threads(std::max(1, hardware_threads() / std::max(1, processes)));
    return ThreadSettings{intra_op > 0 ? static_cast<int>(intra_op) : fallback.intra_op,
                          blas > 0 ? static_cast<int>(blas) : fallback.blas};
}

}  // namespace moelab::core

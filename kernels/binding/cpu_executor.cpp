#include "kernels/binding/cpu_executor.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <type_traits>

#include <ATen/ATen.h>

#include "kernels/binding/blas_gemm.h"
#include "kernels/binding/blas_threads.h"
#include "kernels/binding/pass_pool.h"

namespace moelab::kernels::binding {

namespace {

// The product through ATen (its BLAS) where the BLAS cannot be called directly: views of the raw
// buffers, no copies.
template <class T>
void gemm_through_aten(const cpu::GemmArgs<T>& g) {
    const at::TensorOptions options =
        at::TensorOptions().dtype(std::is_same_v<T, float> ? at::kFloat : at::kDouble);
    auto view = [&](const T* data, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                    bool transposed) {
        const at::Tensor stored =
            at::from_blob(const_cast<T*>(data),
                          {transposed ? cols : rows, transposed ? rows : cols}, {ld, 1}, options);
        return transposed ? stored.t() : stored;
    };
    const at::Tensor a = view(g.a, g.m, g.k, g.lda, g.transpose_a);
    const at::Tensor b = view(g.b, g.k, g.n, g.ldb, g.transpose_b);
    at::Tensor c = at::from_blob(g.c, {g.m, g.n}, {g.ldc, 1}, options);
    if (g.accumulate) {
        c.addmm_(a, b);
    } else {
        at::mm_out(c, a, b);
    }
}

template <class T>
void gemm(const cpu::GemmArgs<T>& args) {
    if (!blas_gemm(args)) gemm_through_aten(args);
}

}  // namespace

void aten_gemm(const cpu::GemmArgs<float>& args) { gemm_through_aten(args); }
void aten_gemm(const cpu::GemmArgs<double>& args) { gemm_through_aten(args); }

const cpu::CpuExecutor& cpu_executor() {
    static const cpu::CpuExecutor executor{
        .gemm_f32 = gemm<float>,
        .gemm_f64 = gemm<double>,
        .parallel_for =
            [](std::int64_t n, std::int64_t grain,
               const std::function<void(std::int64_t, std::int64_t)>& body) {
                run_pass(n, grain, body);
            },
        .for_each_task =
            [](std::int64_t n, int threads, const std::function<void(std::int64_t)>& task) {
                // Where only one thread would work (one task, or one allowed), the tasks run in
                // turn on this thread and their GEMMs keep the BLAS's threads.
                if (std::min<std::int64_t>({n, threads, pass_parts()}) <= 1) {
                    for (std::int64_t i = 0; i < n; ++i) task(i);
                    return;
                }
                // Each task's GEMMs on its own thread (Note [Experts side by side]).
                const SingleThreadedBlas single_threaded;
                run_tasks(n, threads, task);
            },
        // As many as the BLAS was given cores, where one setting makes its GEMMs single-threaded
        // on every thread; else one (the tasks in turn, the GEMMs with the BLAS's threads).
        .task_threads =
            [] { return blas_threads_are_global() ? std::min(blas_threads(), pass_parts()) : 1; },
    };
    return executor;
}

}  // namespace moelab::kernels::binding

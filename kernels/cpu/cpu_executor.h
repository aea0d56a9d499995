#pragma once

// What a torch-free CPU kernel needs from whoever launches it: a row-major GEMM, a parallel loop,
// and a way to run independent tasks side by side. The binding provides the GEMM of the BLAS that
// LibTorch calls (binding/cpu_executor.h: OpenBLAS's own entry point where that is the process's
// BLAS, ATen's otherwise), so the kernels use the BLAS of the rest of the run and link none of
// their own: Debian's LibTorch calls OpenBLAS, a PyTorch wheel carries MKL inside libtorch_cpu;
// the loop and the tasks run on the binding's pool (kernels/binding/pass_pool.h). This is the CPU
// counterpart of the stream a CUDA launcher takes.

#include <cstdint>
#include <functional>

namespace moelab::kernels::cpu {

// C (m x n) = op(A) op(B), or C += op(A) op(B) when `accumulate`. Row-major, leading dimensions in
// elements. op(A) is m x k: A is stored m x k, or k x m when `transpose_a`; likewise B (k x n, or
// n x k when `transpose_b`).
template <class T>
struct GemmArgs {
    bool transpose_a = false;
    bool transpose_b = false;
    std::int64_t m = 0, n = 0, k = 0;
    const T* a = nullptr;
    std::int64_t lda = 0;
    const T* b = nullptr;
    std::int64_t ldb = 0;
    T* c = nullptr;
    std::int64_t ldc = 0;
    bool accumulate = false;
};

struct CpuExecutor {
    void (*gemm_f32)(const GemmArgs<float>&) = nullptr;
    void (*gemm_f64)(const GemmArgs<double>&) = nullptr;
    // Calls body(begin, end) on chunks covering [0, n), each at least `grain` long except the
    // last, possibly on several threads at once; returns when every chunk is done.
    std::function<void(std::int64_t n, std::int64_t grain,
                       const std::function<void(std::int64_t, std::int64_t)>& body)>
        parallel_for;
    // Calls task(i) once for every i in [0, n), up to `threads` (at most task_threads()) at once
    // on different threads, each task on one thread; the GEMMs a task calls run on that thread
    // alone, and its parallel_for calls may run inline. Tasks start in index order, so the caller
    // puts the largest first. Returns when every task is done.
    std::function<void(std::int64_t n, int threads, const std::function<void(std::int64_t)>& task)>
        for_each_task;
    // How many tasks for_each_task can run at once now (1: one after another, the GEMMs with the
    // BLAS's own threads).
    std::function<int()> task_threads;

    void gemm(const GemmArgs<float>& args) const { gemm_f32(args); }
    void gemm(const GemmArgs<double>& args) const { gemm_f64(args); }
};

}  // namespace moelab::kernels::cpu

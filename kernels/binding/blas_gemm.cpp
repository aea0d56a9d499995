#include "kernels/binding/blas_gemm.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/binding/blas_threads.h"

namespace moelab::kernels::binding {

namespace {

template <class T>
using FortranGemm = void (*)(const char* transa, const char* transb, const int* m, const int* n,
                             const int* k, const T* alpha, const T* a, const int* lda, const T* b,
                             const int* ldb, const T* beta, T* c, const int* ldc);

// Only when the process's BLAS is OpenBLAS, which is then the library ATen calls: a sgemm_ of
// some other library in the process would run with threads that SingleThreadedBlas cannot set.
template <class T>
FortranGemm<T> find_gemm(const char* name) {
    if (blas_threads() == 0) return nullptr;
    return reinterpret_cast<FortranGemm<T>>(dlsym(RTLD_DEFAULT, name));
}

template <class T>
FortranGemm<T> process_gemm();

template <>
FortranGemm<float> process_gemm<float>() {
    static const FortranGemm<float> gemm = find_gemm<float>("sgemm_");
    return gemm;
}

template <>
FortranGemm<double> process_gemm<double>() {
    static const FortranGemm<double> gemm = find_gemm<double>("dgemm_");
    return gemm;
}

bool fits_int(std::int64_t value) { return value >= 0 && value <= std::numeric_limits<int>::max(); }

template <class T>
bool gemm_through_blas(const cpu::GemmArgs<T>& g) {
    const FortranGemm<T> gemm = process_gemm<T>();
    if (gemm == nullptr) return false;
    for (const std::int64_t size : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc}) {
        if (!fits_int(size)) return false;
    }
    // Each stored row must hold its columns; the BLAS would report anything else on stderr and
    // leave C as it was.
    const std::int64_t a_cols = g.transpose_a ? g.m : g.k, b_cols = g.transpose_b ? g.k : g.n;
    if (g.lda < a_cols || g.ldb < b_cols || g.ldc < g.n) return false;
    if (g.m == 0 || g.n == 0) return true;
    if (g.k == 0) {  // an empty sum: C = 0, or C unchanged when accumulating
        if (!g.accumulate) {
            for (std::int64_t r = 0; r < g.m; ++r) std::fill_n(g.c + r * g.ldc, g.n, T(0));
        }
        return true;
    }
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the BLAS reads each stored
    // row-major matrix as its transpose, so B comes first and each keeps its own flag.
    const char trans_b = g.transpose_b ? 'T' : 'N';
    const char trans_a = g.transpose_a ? 'T' : 'N';
    const int m = static_cast<int>(g.n), n = static_cast<int>(g.m), k = static_cast<int>(g.k);
    // The BLAS checks that each leading dimension covers its column-major rows, also for empty
    // operands it never reads.
    const int ldb = static_cast<int>(std::max<std::int64_t>(g.ldb, 1));
    const int lda = static_cast<int>(std::max<std::int64_t>(g.lda, 1));
    const int ldc = static_cast<int>(std::max<std::int64_t>(g.ldc, 1));
    const T alpha = 1;
    const T beta = g.accumulate ? 1 : 0;
    gemm(&trans_b, &trans_a, &m, &n, &k, &alpha, g.b, &ldb, g.a, &lda, &beta, g.c, &ldc);
    return true;
}

}  // namespace

bool blas_gemm(const cpu::GemmArgs<float>& args) { return gemm_through_blas(args); }
bool blas_gemm(const cpu::GemmArgs<double>& args) { return gemm_through_blas(args); }

}  // namespace moelab::kernels::binding

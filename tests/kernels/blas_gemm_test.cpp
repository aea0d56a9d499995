// The binding's products (kernels/binding/cpu_executor.h, blas_gemm.h) against a triple loop: every
// combination of transposed operands, accumulation, leading dimensions wider than the rows, and an
// empty sum. With Debian's LibTorch they run on OpenBLAS's sgemm_/dgemm_ called directly, elsewhere
// through ATen; the results are the same either way.

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "kernels/binding/blas_gemm.h"
#include "kernels/binding/blas_threads.h"
#include "kernels/binding/cpu_executor.h"

namespace moelab::kernels {
namespace {

struct Case {
    bool transpose_a, transpose_b, accumulate;
    std::int64_t m, n, k, pad;  // pad: extra elements per stored row
};

// C (m x n) [+]= op(A) op(B), row-major with leading dimensions, one product at a time.
template <class T>
void naive_gemm(const cpu::GemmArgs<T>& g) {
    for (std::int64_t i = 0; i < g.m; ++i) {
        for (std::int64_t j = 0; j < g.n; ++j) {
            double sum = g.accumulate ? g.c[i * g.ldc + j] : 0.0;
            for (std::int64_t p = 0; p < g.k; ++p) {
                const T a = g.transpose_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
                const T b = g.transpose_b ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j];
                sum += static_cast<double>(a) * static_cast<double>(b);
            }
            g.c[i * g.ldc + j] = static_cast<T>(sum);
        }
    }
}

// `gemm`: the executor's product (OpenBLAS directly where it can) or ATen's.
template <class T, class Gemm>
void check_cases(Gemm&& gemm, double tolerance) {
    const std::vector<Case> cases = {
        {false, false, false, 5, 7, 3, 0},   {true, false, false, 6, 4, 9, 2},
        {false, true, true, 8, 3, 5, 1},     {true, true, true, 4, 6, 7, 3},
        {false, true, false, 64, 130, 8, 0}, {true, false, true, 130, 8, 64, 5},
        {false, false, false, 3, 4, 0, 1},   {false, false, true, 3, 4, 0, 0},
    };
    for (const Case& c : cases) {
        const std::int64_t a_rows = c.transpose_a ? c.k : c.m, a_cols = c.transpose_a ? c.m : c.k;
        const std::int64_t b_rows = c.transpose_b ? c.n : c.k, b_cols = c.transpose_b ? c.k : c.n;
        const std::int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
        std::vector<T> a(static_cast<std::size_t>(a_rows * lda + 1));
        std::vector<T> b(static_cast<std::size_t>(b_rows * ldb + 1));
        std::vector<T> c_fast(static_cast<std::size_t>(c.m * ldc));
        for (std::size_t i = 0; i < a.size(); ++i)
            a[i] = static_cast<T>(static_cast<int>(i * 37 % 23) - 11) / 7;
        for (std::size_t i = 0; i < b.size(); ++i)
            b[i] = static_cast<T>(static_cast<int>(i * 53 % 19) - 9) / 5;
        for (std::size_t i = 0; i < c_fast.size(); ++i)
            c_fast[i] = static_cast<T>(static_cast<int>(i % 5) - 2);
        std::vector<T> c_naive = c_fast;
        cpu::GemmArgs<T> args{c.transpose_a, c.transpose_b, c.m, c.n,           c.k, a.data(),
                              lda,           b.data(),      ldb, c_fast.data(), ldc, c.accumulate};
        gemm(args);
        args.c = c_naive.data();
        naive_gemm(args);
        for (std::size_t i = 0; i < c_fast.size(); ++i) {
            ASSERT_NEAR(c_fast[i], c_naive[i], tolerance)
                << "element " << i << " of m " << c.m << " n " << c.n << " k " << c.k
                << " transposed " << c.transpose_a << c.transpose_b << " accumulate "
                << c.accumulate;
        }
    }
}

TEST(BindingGemm, MatchesATripleLoopInFloat) {
    check_cases<float>([](const cpu::GemmArgs<float>& g) { binding::cpu_executor().gemm(g); },
                       1e-4);
    check_cases<float>([](const cpu::GemmArgs<float>& g) { binding::aten_gemm(g); }, 1e-4);
}

TEST(BindingGemm, MatchesATripleLoopInDouble) {
    check_cases<double>([](const cpu::GemmArgs<double>& g) { binding::cpu_executor().gemm(g); },
                        1e-12);
    check_cases<double>([](const cpu::GemmArgs<double>& g) { binding::aten_gemm(g); }, 1e-12);
}

TEST(BindingGemm, LeavesRowsThatDoNotHoldTheirColumnsToATen) {
    cpu::GemmArgs<float> args{false, false, 2, 3, 4};
    std::vector<float> a(8, 1.0f), b(12, 1.0f), c(6, 0.0f);
    args.a = a.data(), args.lda = 3;  // rows of 4 columns in 3
    args.b = b.data(), args.ldb = 3, args.c = c.data(), args.ldc = 3;
    EXPECT_FALSE(binding::blas_gemm(args));
}

TEST(BindingGemm, GoesStraightToOpenBlasWhereThatIsTheProcessBlas) {
    cpu::GemmArgs<float> args{false, false, 1, 1, 1};
    float a = 2, b = 3, c = 0;
    args.a = &a, args.lda = 1, args.b = &b, args.ldb = 1, args.c = &c, args.ldc = 1;
    EXPECT_EQ(binding::blas_gemm(args), binding::blas_threads() > 0);
    if (binding::blas_threads() > 0) EXPECT_EQ(c, 6.0f);
}

}  // namespace
}  // namespace moelab::kernels

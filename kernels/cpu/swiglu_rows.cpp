#include "kernels/cpu/swiglu_rows.h"

#include <cmath>
#include <cstdint>

namespace moelab::kernels::cpu {

namespace {

// e^x in float, within about 2 ulp of the exact value on [-87, 88] (inputs outside are clamped
// there: what the sigmoid needs), written so that the compiler vectorises loops over it: no
// branches, calls or tables. Cody-Waite reduction x = n ln2 + r with ln2 split in two so that
// n ln2 is exact, the classic Cephes degree-6 polynomial for e^r on |r| <= ln2 / 2, and 2^n put
// together in the exponent bits.
[[gnu::always_inline]] inline float exp_approx(float x) {
    // Plain comparisons and builtins, no calls into the standard library: those would stay
    // compiled for the baseline target and not inline into the AVX2 clone below.
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln2): adding and subtracting 1.5 * 2^23 rounds to an integer in float
    // arithmetic (no fast-math here, so the compiler keeps the two operations).
    constexpr float kRound = 12582912.0f;
    const float n = (x * 1.44269504088896341f + kRound) - kRound;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * __builtin_bit_cast(float, (static_cast<std::int32_t>(n) + 127) << 23);
}

[[gnu::always_inline]] inline float sigmoid(float g) { return 1.0f / (1.0f + exp_approx(-g)); }
inline double sigmoid(double g) { return 1.0 / (1.0 + std::exp(-g)); }

// Inlined into each clone below, so that each is compiled for its own target.
template <class T>
[[gnu::always_inline]] inline void forward_rows(const T* __restrict pre, const T* __restrict weight,
                                                T* __restrict act, std::int64_t begin,
                                                std::int64_t end, std::int64_t d_ff) {
    for (std::int64_t r = begin; r < end; ++r) {
        const T* __restrict gate = pre + r * 2 * d_ff;
        const T* __restrict up = gate + d_ff;
        T* __restrict a = act + r * d_ff;
        const T w = weight[r];
        for (std::int64_t j = 0; j < d_ff; ++j) {
            const T g = gate[j];
            a[j] = w * (g * sigmoid(g)) * up[j];
        }
    }
}

template <class T>
[[gnu::always_inline]] inline void backward_rows(const T* __restrict pre,
                                                 const T* __restrict grad_act,
                                                 const T* __restrict weight, T* __restrict grad_pre,
                                                 T* __restrict grad_weight, std::int64_t begin,
                                                 std::int64_t end, std::int64_t d_ff) {
    for (std::int64_t r = begin; r < end; ++r) {
        const T* __restrict gate = pre + r * 2 * d_ff;
        const T* __restrict up = gate + d_ff;
        const T* __restrict da = grad_act + r * d_ff;
        T* __restrict d_gate = grad_pre + r * 2 * d_ff;
        T* __restrict d_up = d_gate + d_ff;
        const T w = weight[r];
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (std::int64_t j = 0; j < d_ff; ++j) {
            const T g = gate[j];
            const T s = sigmoid(g);
            const T silu = g * s;
            dot += da[j] * silu * up[j];
            const T d = w * da[j];
            d_gate[j] = d * up[j] * s * (1 + g * (1 - s));
            d_up[j] = d * silu;
        }
        grad_weight[r] = dot;
    }
}

}  // namespace

// The float loops are compiled twice, for AVX2 and for the baseline, and the loader picks what
// the machine has (function multiversioning in GCC and Clang): the build stays portable and
// common machines run 8 lanes. Versions are chosen by feature; an `arch=` version would be chosen
// only on that exact CPU model. Float64 serves the tests only.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOELAB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MOELAB_CLONES
#endif

MOELAB_CLONES void swiglu_rows(const float* pre, const float* weight, float* act,
                               std::int64_t begin, std::int64_t end, std::int64_t d_ff) {
    forward_rows(pre, weight, act, begin, end, d_ff);
}

void swiglu_rows(const double* pre, const double* weight, double* act, std::int64_t begin,
                 std::int64_t end, std::int64_t d_ff) {
    forward_rows(pre, weight, act, begin, end, d_ff);
}

MOELAB_CLONES void swiglu_rows_backward(const float* pre, const float* grad_act,
                                        const float* weight, float* grad_pre, float* grad_weight,
                                        std::int64_t begin, std::int64_t end, std::int64_t d_ff) {
    backward_rows(pre, grad_act, weight, grad_pre, grad_weight, begin, end, d_ff);
}

void swiglu_rows_backward(const double* pre, const double* grad_act, const double* weight,
                          double* grad_pre, double* grad_weight, std::int64_t begin,
                          std::int64_t end, std::int64_t d_ff) {
    backward_rows(pre, grad_act, weight, grad_pre, grad_weight, begin, end, d_ff);
}

}  // namespace moelab::kernels::cpu

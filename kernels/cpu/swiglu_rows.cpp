#include "kernels/cpu/swiglu_rows.h"

#include <cmath>
#include <cstdint>

#include "kernels/cpu/vector_math.h"

namespace moelab::kernels::cpu {

namespace {

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

#include "kernels/cpu/adamw_cpu.h"

#include <cmath>

#include "kernels/cpu/vector_math.h"

namespace moelab::kernels::cpu {

namespace {

// Inlined into each clone below. The same operations, in the same order, as the tensor chain it
// replaces (decay first, then the moments, then p + (-step_size) m / denom), so the two agree to
// rounding (contractions into fused multiply-adds may differ).
template <class T>
[[gnu::always_inline]] inline void update(const AdamWStep<T>& s, T* __restrict param,
                                          const T* __restrict grad, T* __restrict exp_avg,
                                          T* __restrict exp_avg_sq, std::int64_t begin,
                                          std::int64_t end) {
    const T keep1 = s.beta1, add1 = T(1) - s.beta1;
    const T keep2 = s.beta2, add2 = T(1) - s.beta2;
    const T minus_step = -s.step_size;
    for (std::int64_t i = begin; i < end; ++i) {
        const T g = grad[i];
        const T m = exp_avg[i] * keep1 + add1 * g;
        const T v = exp_avg_sq[i] * keep2 + add2 * (g * g);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        const T denom = std::sqrt(v) / s.sqrt_correction2 + s.eps;
        param[i] = param[i] * s.decay + minus_step * (m / denom);
    }
}

}  // namespace

MOELAB_CLONES void adamw_update(const AdamWStep<float>& step, float* param, const float* grad,
                                float* exp_avg, float* exp_avg_sq, std::int64_t begin,
                                std::int64_t end) {
    update(step, param, grad, exp_avg, exp_avg_sq, begin, end);
}

void adamw_update(const AdamWStep<double>& step, double* param, const double* grad, double* exp_avg,
                  double* exp_avg_sq, std::int64_t begin, std::int64_t end) {
    update(step, param, grad, exp_avg, exp_avg_sq, begin, end);
}

}  // namespace moelab::kernels::cpu

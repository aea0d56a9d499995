#pragma once

// The AdamW update of one parameter in a single pass (internal: core/train/adamw.cpp is its
// caller), in place of the chain of tensor operations that reads and writes the parameter and its
// moments nine times: decay, both moments, the bias-corrected step, element by element.

#include <cstdint>

namespace moelab::kernels::cpu {

// One step's constants, computed by the caller in double.
template <class T>
struct AdamWStep {
    T beta1 = 0, beta2 = 0, eps = 0;
    T decay = 1;             // 1 - lr * weight_decay, or 1 where the parameter is not decayed
    T step_size = 0;         // lr / (1 - beta1^t)
    T sqrt_correction2 = 1;  // sqrt(1 - beta2^t)
};

// For i in [begin, end):
//   m_i = beta1 m_i + (1 - beta1) g_i;  v_i = beta2 v_i + (1 - beta2) g_i^2
//   p_i = decay p_i - step_size m_i / (sqrt(v_i) / sqrt_correction2 + eps)
void adamw_update(const AdamWStep<float>& step, float* param, const float* grad, float* exp_avg,
                  float* exp_avg_sq, std::int64_t begin, std::int64_t end);
void adamw_update(const AdamWStep<double>& step, double* param, const double* grad, double* exp_avg,
                  double* exp_avg_sq, std::int64_t begin, std::int64_t end);

}  // namespace moelab::kernels::cpu

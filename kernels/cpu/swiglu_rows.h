#pragma once

// The elementwise passes of the grouped SwiGLU kernel on the CPU, one fused loop each (internal
// to kernels/cpu). Every function works on rows [begin, end) of row-major buffers: `pre` holds
// [gate | up] (2 d_ff per row), activations d_ff per row.

#include <cstdint>

namespace moelab::kernels::cpu {

// act[r] = weight[r] * SiLU(gate_r) * up_r
void swiglu_rows(const float* pre, const float* weight, float* act, std::int64_t begin,
                 std::int64_t end, std::int64_t d_ff);
void swiglu_rows(const double* pre, const double* weight, double* act, std::int64_t begin,
                 std::int64_t end, std::int64_t d_ff);

// From grad_act, the gradient of act = weight * SiLU(gate) * up:
//   grad_weight[r] = <grad_act_r, SiLU(gate_r) * up_r>
//   grad_pre[r]    = [weight_r grad_act_r * up_r * SiLU'(gate_r) | weight_r grad_act_r *
//   SiLU(gate_r)]
// with SiLU'(g) = s (1 + g (1 - s)), s = sigmoid(g).
void swiglu_rows_backward(const float* pre, const float* grad_act, const float* weight,
                          float* grad_pre, float* grad_weight, std::int64_t begin, std::int64_t end,
                          std::int64_t d_ff);
void swiglu_rows_backward(const double* pre, const double* grad_act, const double* weight,
                          double* grad_pre, double* grad_weight, std::int64_t begin,
                          std::int64_t end, std::int64_t d_ff);

}  // namespace moelab::kernels::cpu

#pragma once

// One AdamW step of one parameter in a single pass over the pass pool's threads
// (kernels/cpu/adamw_cpu.h), for core/train/adamw.cpp.

#include <ATen/ATen.h>

namespace moelab::kernels::binding {

struct AdamWConstants {
    double beta1 = 0, beta2 = 0, eps = 0;
    double decay = 1;             // 1 - lr * weight_decay, or 1
    double step_size = 0;         // lr / (1 - beta1^t)
    double sqrt_correction2 = 1;  // sqrt(1 - beta2^t)
};

// Updates `param`, `exp_avg` and `exp_avg_sq` in place from `grad` and returns true, where all
// four are contiguous CPU tensors of one dtype (float32 or float64) and size; false, having
// changed nothing, otherwise (the caller then runs the same update as tensor operations).
bool fused_adamw_step(at::Tensor& param, const at::Tensor& grad, at::Tensor& exp_avg,
                      at::Tensor& exp_avg_sq, const AdamWConstants& constants);

}  // namespace moelab::kernels::binding

#pragma once

// The elementwise heart of the grouped SwiGLU experts on CUDA, torch-free: the fused activation
// act = weight * SiLU(gate) * up between the two grouped GEMMs, and its backward with the routing
// weight's gradient. Rows are the routing plan's (kernels/binding/grouped_swiglu.h: RoutedRows);
// rows at or after *routed_end (read on the device, so no host synchronisation) are not routed:
// their outputs and gradients are zero, whatever the GEMMs left in them.
//
// Buffers are row-major; pre holds [gate | up] (2 d_ff per row). `stream` is a cudaStream_t.
// C++17, so that CMake can name nvcc's dialect (the kernel API headers are C++20).

#include <cstdint>

#include "kernels/cuda/element.h"

namespace moelab::kernels::cuda {

// act[r] = weight[r] * SiLU(gate_r) * up_r, in `type`; weight float32.
void swiglu_rows_forward(Element type, const void* pre, const float* weight, void* act,
                         std::int64_t rows, std::int64_t d_ff, const std::int64_t* routed_end,
                         void* stream);

// grad_pre[r] = [weight_r grad_act_r * up_r * SiLU'(gate_r) | weight_r grad_act_r * SiLU(gate_r)]
// grad_weight[r] = <grad_act_r, SiLU(gate_r) * up_r>, accumulated in float32 by one block per
// row in a fixed order (deterministic).
void swiglu_rows_backward(Element type, const void* pre, const void* grad_act, const float* weight,
                          void* grad_pre, float* grad_weight, std::int64_t rows, std::int64_t d_ff,
                          const std::int64_t* routed_end, void* stream);

}  // namespace moelab::kernels::cuda

#pragma once

// The plain LibTorch composition of SwiGLU experts: the reference every grouped SwiGLU kernel is
// tested against, and the `reference` kernel itself (differentiable operator by operator, so
// autocast applies to it). Layout: Note [Expert weight layout] in moelab/kernels/grouped_swiglu.h.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace moelab::kernels::reference {

// The intermediate activation SiLU(x W_gate) * (x W_up): (..., rows, d_ff). Broadcasts over
// leading dimensions of w_in, so (E, d, 2f) weights give (E, rows, f).
at::Tensor swiglu_activation(const at::Tensor& x, const at::Tensor& w_in);

// SwiGLU of every row through one expert's weights: (rows, d) x (d, 2f) x (f, d); broadcasts
// like swiglu_activation.
at::Tensor swiglu(const at::Tensor& x, const at::Tensor& w_in, const at::Tensor& w_out);

// rows:  (assignments, d_model), rows [offset_e, offset_e + counts[e]) belong to expert e
// w_in:  (experts, d_model, 2 * d_ff); w_out: (experts, d_ff, d_model)
// Returns (assignments, d_model).
at::Tensor grouped_swiglu(const at::Tensor& rows, const at::Tensor& w_in, const at::Tensor& w_out,
                          const std::vector<std::int64_t>& counts);

}  // namespace moelab::kernels::reference

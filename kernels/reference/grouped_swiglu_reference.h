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

// The grouped SwiGLU experts with gather and weighted combine, as LibTorch operators:
//   out[t] = sum over rows r with token[r] = t of weight[r] * SwiGLU_e(r)(x[t])
// x: (tokens, d_model); token: (rows,) int64 grouped by expert, counts[e] rows for expert e;
// weight: (rows,); w_in: (experts, d_model, 2 d_ff); w_out: (experts, d_ff, d_model).
// Returns (tokens, d_model) in the dtype of x (the expert rows may come back in another dtype
// under autocast; the weighted combine accumulates in x's).
at::Tensor grouped_swiglu(const at::Tensor& x, const at::Tensor& token, const at::Tensor& weight,
                          const at::Tensor& w_in, const at::Tensor& w_out,
                          const std::vector<std::int64_t>& counts);

}  // namespace moelab::kernels::reference

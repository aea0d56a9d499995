#pragma once

// SwiGLU experts applied to rows grouped by expert: the grouped GEMM at the heart of an expert
// bank. Rows [offset_e, offset_e + counts[e]) of `rows` belong to expert e.
//
//   out_rows = W_out_e^T-applied( SiLU(gate) * up ),  [gate | up] = rows @ W_in_e
//
// Two implementations with identical results:
//  - grouped_swiglu():          a custom autograd function, one GEMM per expert written into
//                               preallocated outputs, the pre-activation kept for the backward
//                               pass (Note [Grouped SwiGLU backward]). Used on the CPU.
//  - grouped_swiglu_composed(): the same from differentiable LibTorch operators (per-expert mm,
//                               cat); autocast applies to it. Used on CUDA until the fused CUDA
//                               kernels land, and as a second oracle in tests.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace moelab::core {

// rows:  (assignments, d_model)
// w_in:  (experts, d_model, 2 * d_ff)   [gate | up] along the last dimension
// w_out: (experts, d_ff, d_model)
// counts: rows per expert, summing to assignments. Returns (assignments, d_model).
at::Tensor grouped_swiglu(const at::Tensor& rows, const at::Tensor& w_in, const at::Tensor& w_out,
                          const std::vector<std::int64_t>& counts);

at::Tensor grouped_swiglu_composed(const at::Tensor& rows, const at::Tensor& w_in,
                                   const at::Tensor& w_out,
                                   const std::vector<std::int64_t>& counts);

// SwiGLU of every row through one expert's weights: (rows, d) x (d, 2f) x (f, d). Broadcasts over
// leading dimensions of w_in/w_out, so (E, d, 2f) weights give (E, rows, d).
at::Tensor swiglu(const at::Tensor& x, const at::Tensor& w_in, const at::Tensor& w_out);

// The intermediate activation SiLU(x W_gate) * (x W_up) of swiglu(): (..., rows, d_ff).
at::Tensor swiglu_activation(const at::Tensor& x, const at::Tensor& w_in);

}  // namespace moelab::core

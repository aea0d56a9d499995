#pragma once

// The torch side of the grouped SwiGLU expert family: describes tensors as a GroupedSwigluDesc,
// and runs the kernel chosen for it. The only place where kernels meet tensors.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "moelab/kernels/grouped_swiglu.h"

namespace moelab::kernels {

// The case `rows` (assignments, d_model), `w_in` (experts, d_model, 2 d_ff) and `w_out`
// (experts, d_ff, d_model) pose. Throws std::invalid_argument when the shapes disagree.
GroupedSwigluDesc describe_grouped_swiglu(const at::Tensor& rows, const at::Tensor& w_in,
                                          const at::Tensor& w_out);

// Runs `kernel` on the case; `counts` are rows per expert (summing to the rows). Throws
// std::invalid_argument when the kernel cannot implement the case, with its reason.
at::Tensor run_grouped_swiglu(const GroupedSwigluKernel& kernel, const at::Tensor& rows,
                              const at::Tensor& w_in, const at::Tensor& w_out,
                              const std::vector<std::int64_t>& counts);

}  // namespace moelab::kernels

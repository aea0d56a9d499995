#pragma once

// The `grouped` kernel: SwiGLU experts over rows grouped by expert, one GEMM per expert written
// into preallocated outputs, with a hand-written backward (Note [Grouped SwiGLU backward]). It
// runs its GEMMs through ATen today; the torch-free CPU launcher of the kernels work replaces the
// loop, behind the same entry point.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace moelab::kernels::binding {

// Same contract as reference::grouped_swiglu (kernels/reference/grouped_swiglu_reference.h).
at::Tensor grouped_swiglu_cpu(const at::Tensor& rows, const at::Tensor& w_in,
                              const at::Tensor& w_out, const std::vector<std::int64_t>& counts);

}  // namespace moelab::kernels::binding

#pragma once

// The `grouped_mm` kernel: at::_grouped_mm (LibTorch 2.8+, CUDA) for both matrix products in
// bfloat16, with moelab's fused activation kernel (kernels/cuda/swiglu_rows_cuda.h) between them
// and the plan's group ends read on the device. Built into every binding; without LibTorch 2.8
// and the cuda preset it throws (its can_implement refuses such cases first).

#include <ATen/ATen.h>

#include "kernels/binding/grouped_swiglu.h"

namespace moelab::kernels::binding {

// Whether this build can run the kernel at all (LibTorch >= 2.8 and MOELAB_CUDA).
bool grouped_mm_built();

// The contract of run_grouped_swiglu for CUDA tensors; the result is in the dtype of x. The
// bfloat16 weights come from `casts` when given (made again only when the weights change).
at::Tensor grouped_swiglu_grouped_mm(const at::Tensor& x, const RoutedRows& routed,
                                     const at::Tensor& w_in, const at::Tensor& w_out,
                                     WeightCasts* casts);

}  // namespace moelab::kernels::binding

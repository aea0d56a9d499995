#pragma once

// The `grouped_cuda` kernel's binding: moelab's own grouped GEMMs on any CUDA GPU
// (kernels/cuda/grouped_swiglu_cuda.h) with autograd. Built with the cuda preset only.

#include <ATen/ATen.h>

#include "kernels/binding/grouped_swiglu.h"

namespace moelab::kernels::binding {

// Whether this build has the kernel (the cuda preset).
bool cuda_kernels_built();

// x on a CUDA device, float32 or bfloat16; the matrix products in bfloat16 when `bfloat16`,
// else float32 (sums in float32 either way; the float32 master weights are read as they are).
at::Tensor grouped_swiglu_cuda(const at::Tensor& x, const RoutedRows& routed,
                               const at::Tensor& w_in, const at::Tensor& w_out, bool bfloat16);

}  // namespace moelab::kernels::binding

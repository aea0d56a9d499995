#pragma once

// The `grouped` kernel's autograd wiring around the torch-free CPU launchers of
// kernels/cpu/grouped_swiglu_cpu.h: tensors in, raw pointers and ATen's BLAS and threads to the
// launchers.

#include <ATen/ATen.h>

#include "kernels/binding/grouped_swiglu.h"

namespace moelab::kernels::binding {

// The contract of run_grouped_swiglu, for float32 and float64 CPU tensors; differentiable in x,
// the routing weights and both weight tensors.
at::Tensor grouped_swiglu_cpu(const at::Tensor& x, const RoutedRows& routed, const at::Tensor& w_in,
                              const at::Tensor& w_out);

}  // namespace moelab::kernels::binding

#pragma once

// A tensor's element type as the CUDA launchers name it (kernels/cuda/element.h): bfloat16, or
// float32 for anything else (the bindings hand the launchers float32 or bfloat16 tensors only).

#include <ATen/ATen.h>

#include "kernels/cuda/element.h"

namespace moelab::kernels::binding {

inline cuda::Element element_of(const at::Tensor& t) {
    return t.scalar_type() == at::kBFloat16 ? cuda::Element::kBfloat16 : cuda::Element::kFloat32;
}

}  // namespace moelab::kernels::binding

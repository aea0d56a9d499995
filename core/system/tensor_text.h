#pragma once

// Short text forms of tensor metadata for error messages: "(3, 4)", "int64 (3, 4)".

#include <string>

#include <ATen/core/Tensor.h>

namespace moelab::core {

inline std::string shape_text(at::IntArrayRef sizes) {
    std::string text = "(";
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        text += (i ? ", " : "") + std::to_string(sizes[i]);
    }
    return text + (sizes.size() == 1 ? ",)" : ")");
}

inline std::string tensor_text(const at::Tensor& t) {
    if (!t.defined()) return "nothing";
    return std::string(c10::toString(t.scalar_type())) + " " + shape_text(t.sizes());
}

}  // namespace moelab::core

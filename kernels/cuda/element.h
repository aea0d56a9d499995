#pragma once

// The element type of the row buffers every CUDA launcher reads and writes (activations, their
// gradients, inputs in the compute dtype); weights and routing weights are float32. C++17 (nvcc).

#include <cstdint>

namespace moelab::kernels::cuda {

enum class Element : std::uint8_t { kFloat32, kBfloat16 };

}  // namespace moelab::kernels::cuda

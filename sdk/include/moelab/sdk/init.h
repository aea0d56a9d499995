#pragma once

// Seeded parameter initialisation for plugins. Each layer's context carries a seed; drawing from a
// generator made from it (instead of LibTorch's global one) makes a plugin's initial weights
// independent of how many other modules were built before it.

#include <cmath>
#include <cstdint>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace moelab::sdk {

inline at::Generator make_generator(std::uint64_t seed) {
    return at::detail::createCPUGenerator(seed);
}

// (shape) float32 on the CPU, N(0, std^2).
inline at::Tensor normal_weight(at::IntArrayRef shape, double std, at::Generator& generator) {
    return at::normal(0.0, std, shape, generator, at::TensorOptions().dtype(at::kFloat));
}

// Standard deviation for matrices that write into the residual stream (GPT-2's scaling).
inline double residual_init_std(double init_std, std::int64_t layers) {
    return init_std / std::sqrt(2.0 * static_cast<double>(std::max<std::int64_t>(1, layers)));
}

}  // namespace moelab::sdk

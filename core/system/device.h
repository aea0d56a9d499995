#pragma once

// Resolving the recipe's train.device ("auto", "cpu", "cuda") to the device a run uses.

#include <c10/core/Device.h>

#include "core/config/options.h"

namespace moelab::core {

// kCpu or kCuda. ConfigError at train.device when CUDA is asked for but not available, and at
// model.dtype when the resolved device cannot run the dtype (bfloat16 on the CPU). Callers record
// the result in the recipe (train.device), so recipe.resolved.toml says what the run used.
DeviceChoice resolve_device(const Recipe& recipe);

// The LibTorch device of a resolved choice (the first GPU for kCuda).
at::Device torch_device(DeviceChoice device);

}  // namespace moelab::core

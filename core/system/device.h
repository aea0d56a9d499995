#pragma once

// Resolving the recipe's train.device ("auto", "cpu", "cuda") to the device a run uses.

#include <string>

#include "core/config/options.h"

namespace moelab::core {

// "cpu" or "cuda". ConfigError at train.device when CUDA is asked for but not available, and at
// model.dtype when the resolved device cannot run the dtype (bfloat16 on the CPU). Callers record
// the result in the recipe (train.device), so recipe.resolved.toml says what the run used.
std::string resolve_device(const Recipe& recipe);

}  // namespace moelab::core

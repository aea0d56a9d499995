#pragma once

// Resolving the recipe's train.device ("auto", "cpu", "cuda") to the device a run uses.

#include <string>

#include "core/config/options.h"

namespace moelab::core {

// "cpu" or "cuda". ConfigError at train.device when CUDA is asked for but not available.
std::string resolve_device(const Recipe& recipe);

}  // namespace moelab::core

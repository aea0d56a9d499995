#include "core/system/device.h"

#include <torch/cuda.h>

namespace moelab::core {

std::string resolve_device(const Recipe& recipe) {
    const std::string& requested = recipe.train.device;
    const bool cuda = torch::cuda::is_available();
    if (requested == "cuda" && !cuda) {
        throw ConfigError(ConfigIssue{
            recipe.location_of("train.device"), "train.device",
            MOELAB_TORCH_CUDA ? "\"cuda\" requested but no CUDA device is visible"
                              : "\"cuda\" requested but this moelab's LibTorch has no CUDA "
                                "support; use \"cpu\" or \"auto\""});
    }
    if (requested == "auto") return cuda ? "cuda" : "cpu";
    return requested;
}

}  // namespace moelab::core

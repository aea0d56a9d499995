#include "core/system/device.h"

#include <fmt/format.h>
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
    const std::string device = requested == "auto" ? (cuda ? "cuda" : "cpu") : requested;
    // Checked again here, after "auto" is resolved: a bfloat16 recipe must not quietly train in
    // float32 on a machine without CUDA.
    if (device == "cpu" && recipe.model.dtype == "bfloat16") {
        throw ConfigError(ConfigIssue{
            recipe.location_of("model.dtype"), "model.dtype",
            fmt::format("bfloat16 autocast is supported on CUDA only, and train.device = \"{}\" "
                        "resolved to \"cpu\" ({}); use model.dtype = \"float32\" on the CPU",
                        requested,
                        MOELAB_TORCH_CUDA ? "no CUDA device is visible"
                                          : "this moelab's LibTorch has no CUDA support")});
    }
    return device;
}

}  // namespace moelab::core

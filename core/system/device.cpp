#include "core/system/device.h"

#include <fmt/format.h>
#include <torch/cuda.h>

namespace moelab::core {

DeviceChoice resolve_device(const Recipe& recipe) {
    const DeviceChoice requested = recipe.train.device;
    const bool cuda = torch::cuda::is_available();
    if (requested == DeviceChoice::kCuda && !cuda) {
        throw ConfigError(ConfigIssue{
            recipe.location_of("train.device"), "train.device",
            MOELAB_TORCH_CUDA ? "\"cuda\" requested but no CUDA device is visible"
                              : "\"cuda\" requested but this moelab's LibTorch has no CUDA "
                                "support; use \"cpu\" or \"auto\""});
    }
    const DeviceChoice device = requested != DeviceChoice::kAuto ? requested
                                : cuda                           ? DeviceChoice::kCuda
                                                                 : DeviceChoice::kCpu;
    // Checked again here, after "auto" is resolved: a bfloat16 recipe must not quietly train in
    // float32 on a machine without CUDA.
    if (device == DeviceChoice::kCpu && recipe.model.dtype == ComputeDtype::kBfloat16) {
        throw ConfigError(ConfigIssue{
            recipe.location_of("model.dtype"), "model.dtype",
            fmt::format("bfloat16 autocast is supported on CUDA only, and train.device = \"{}\" "
                        "resolved to \"cpu\" ({}); use model.dtype = \"float32\" on the CPU",
                        name_of(requested),
                        MOELAB_TORCH_CUDA ? "no CUDA device is visible"
                                          : "this moelab's LibTorch has no CUDA support")});
    }
    return device;
}

at::Device torch_device(DeviceChoice device) {
    return device == DeviceChoice::kCuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
}

}  // namespace moelab::core

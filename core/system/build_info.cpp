#include "core/system/build_info.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include "moelab/sdk/fingerprint.h"
#include "moelab/sdk/version.h"

#ifndef MOELAB_VERSION
#error "MOELAB_VERSION must be defined by the build"
#endif

namespace moelab::core {

BuildInfo build_info() {
    BuildInfo info;
    info.moelab_version = MOELAB_VERSION;
    info.sdk_version = sdk::kSdkVersion;
    info.plugin_abi_version = sdk::kPluginAbiVersion;
    info.build_fingerprint = sdk::kBuildFingerprint;
    info.torch_version = TORCH_VERSION;
    info.cuda_built = MOELAB_TORCH_CUDA != 0;
    info.cuda_devices = static_cast<int>(torch::cuda::device_count());
    return info;
}

}  // namespace moelab::core

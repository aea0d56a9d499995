#pragma once

// Versions of moelab and of what it was built against, for `moelab --version` and the metrics.

#include <string>

namespace moelab::core {

struct BuildInfo {
    std::string moelab_version;
    std::string sdk_version;
    unsigned plugin_abi_version = 0;
    std::string build_fingerprint;
    std::string torch_version;  // LibTorch headers the host was compiled with
    bool cuda_built = false;    // LibTorch has CUDA
    int cuda_devices = 0;       // visible now
};

BuildInfo build_info();

}  // namespace moelab::core

#pragma once

// The build fingerprint stamped into every plugin and into the host. Our boundary passes C++
// objects (std::string, std::function, torch::Tensor, torch::nn::Module), so a plugin is only
// loadable by a host built with the same compiler family and major version, the same libstdc++
// string ABI, the same LibTorch major.minor and the same CUDA-ness of LibTorch. The loader compares
// the fields one by one and names the ones that differ.

#include <cstddef>  // defines _GLIBCXX_USE_CXX11_ABI under libstdc++

#include <torch/version.h>

#define MOELAB_FP_STR2(x) #x
#define MOELAB_FP_STR(x) MOELAB_FP_STR2(x)

#if defined(__clang__)
#define MOELAB_FP_COMPILER "clang-" MOELAB_FP_STR(__clang_major__)
#elif defined(__GNUC__)
#define MOELAB_FP_COMPILER "gcc-" MOELAB_FP_STR(__GNUC__)
#elif defined(_MSC_VER)
#define MOELAB_FP_COMPILER "msvc-" MOELAB_FP_STR(_MSC_VER)
#else
#define MOELAB_FP_COMPILER "unknown"
#endif

#if defined(_GLIBCXX_USE_CXX11_ABI)
#define MOELAB_FP_CXX11_ABI MOELAB_FP_STR(_GLIBCXX_USE_CXX11_ABI)
#else
#define MOELAB_FP_CXX11_ABI "none"
#endif

// Whether the LibTorch we compile against was built with CUDA. Only CMake knows this reliably
// (the headers of CPU and CUDA builds overlap), so moelab_add_plugin() defines MOELAB_TORCH_CUDA.
// Without it the fingerprint says "unknown" and the host refuses the plugin with a clear message.
#if defined(MOELAB_TORCH_CUDA)
#define MOELAB_FP_CUDA MOELAB_FP_STR(MOELAB_TORCH_CUDA)
#else
#define MOELAB_FP_CUDA "unknown"
#endif

namespace moelab::sdk {

// "compiler=gcc-12;cxx11abi=1;torch=1.13;cuda=0"
inline constexpr char kBuildFingerprint[] =
    "compiler=" MOELAB_FP_COMPILER ";cxx11abi=" MOELAB_FP_CXX11_ABI ";torch=" MOELAB_FP_STR(
        TORCH_VERSION_MAJOR) "." MOELAB_FP_STR(TORCH_VERSION_MINOR) ";cuda=" MOELAB_FP_CUDA;

}  // namespace moelab::sdk

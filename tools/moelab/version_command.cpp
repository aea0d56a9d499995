#include <fmt/format.h>

#include "commands.h"
#include "core/system/blas_probe.h"
#include "core/system/build_info.h"

namespace moelab::cli {

std::string version_text() {
    const core::BuildInfo build = core::build_info();
    const core::BlasInfo blas = core::probe_blas();
    std::string text = fmt::format(
        "moelab {}\n"
        "plugin SDK {}, plugin ABI {}\n"
        "build fingerprint: {}\n"
        "LibTorch {} ({}), CUDA devices visible: {}\n"
        "BLAS: {}",
        build.moelab_version, build.sdk_version, build.plugin_abi_version,
        build.build_fingerprint, build.torch_version,
        build.cuda_built ? "built with CUDA" : "CPU only", build.cuda_devices, blas.description());
    if (blas.reference) {
        text +=
            "\nwarning: the reference BLAS is loaded; matrix products run about 25x slower. "
            "Install an optimized BLAS: apt-get install libopenblas0-pthread";
    }
    return text;
}

}  // namespace moelab::cli

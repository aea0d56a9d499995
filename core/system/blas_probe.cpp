#include "core/system/blas_probe.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <filesystem>

namespace moelab::core {

namespace {

int collect_library(dl_phdr_info* info, std::size_t, void* data) {
    auto* libraries = static_cast<std::vector<std::string>*>(data);
    if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
    const std::string name = std::filesystem::path(info->dlpi_name).filename().string();
    const bool blas_like = name.find("blas") != std::string::npos ||
                           name.find("mkl") != std::string::npos ||
                           name.find("blis") != std::string::npos;
    if (!blas_like) return 0;
    std::error_code error;
    const auto resolved = std::filesystem::canonical(info->dlpi_name, error);
    libraries->push_back(error ? std::string(info->dlpi_name) : resolved.string());
    return 0;
}

}  // namespace

BlasInfo probe_blas() {
    BlasInfo info;
    dl_iterate_phdr(collect_library, &info.libraries);
    std::sort(info.libraries.begin(), info.libraries.end());
    info.libraries.erase(std::unique(info.libraries.begin(), info.libraries.end()),
                         info.libraries.end());

    using ConfigFn = const char* (*)();
    if (auto config = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
        info.openblas_config = config();
    }
    const bool optimized = !info.openblas_config.empty() ||
                           std::any_of(info.libraries.begin(), info.libraries.end(),
                                       [](const std::string& path) {
                                           return path.find("openblas") != std::string::npos ||
                                                  path.find("mkl") != std::string::npos ||
                                                  path.find("blis") != std::string::npos;
                                       });
    // Debian installs the reference implementation as .../blas/libblas.so.3.
    const bool has_reference = std::any_of(
        info.libraries.begin(), info.libraries.end(),
        [](const std::string& path) { return path.find("/blas/libblas") != std::string::npos; });
    info.reference = has_reference && !optimized;
    return info;
}

std::string BlasInfo::description() const {
    std::string text;
    for (const std::string& library : libraries) text += (text.empty() ? "" : ", ") + library;
    if (text.empty()) text = "none loaded (LibTorch may use its own kernels)";
    if (!openblas_config.empty()) text += " [" + openblas_config + "]";
    if (reference) text += " [reference BLAS]";
    return text;
}

}  // namespace moelab::core

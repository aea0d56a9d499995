#include "core/system/blas_probe.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <filesystem>

namespace moelab::core {

namespace {

std::string resolved(const char* path) {
    std::error_code error;
    const auto canonical = std::filesystem::canonical(path, error);
    return error ? std::string(path) : canonical.string();
}

bool contains(const std::string& text, const char* needle) {
    return text.find(needle) != std::string::npos;
}

int collect_library(dl_phdr_info* info, std::size_t, void* data) {
    auto* libraries = static_cast<std::vector<std::string>*>(data);
    if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
    const std::string name = std::filesystem::path(info->dlpi_name).filename().string();
    if (contains(name, "blas") || contains(name, "mkl") || contains(name, "blis")) {
        libraries->push_back(resolved(info->dlpi_name));
    }
    return 0;
}

}  // namespace

BlasInfo probe_blas() {
    BlasInfo info;
    dl_iterate_phdr(collect_library, &info.loaded);
    std::sort(info.loaded.begin(), info.loaded.end());
    info.loaded.erase(std::unique(info.loaded.begin(), info.loaded.end()), info.loaded.end());

    // The sgemm_ every caller resolves to: the global scope's first definition.
    void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
    Dl_info where{};
    if (sgemm == nullptr || dladdr(sgemm, &where) == 0 || where.dli_fname == nullptr) return info;
    info.gemm_library = resolved(where.dli_fname);
    if (void* handle = dlopen(where.dli_fname, RTLD_LAZY | RTLD_NOLOAD)) {
        using ConfigFn = const char* (*)();
        if (auto config = reinterpret_cast<ConfigFn>(dlsym(handle, "openblas_get_config"))) {
            info.openblas_config = config();
        }
        dlclose(handle);
    }
    const bool optimized = !info.openblas_config.empty() || contains(info.gemm_library, "openblas") ||
                           contains(info.gemm_library, "mkl") || contains(info.gemm_library, "blis");
    info.reference = !optimized && contains(info.gemm_library, "libblas");
    return info;
}

std::string BlasInfo::description() const {
    std::string text = gemm_library.empty()
                           ? std::string("no BLAS sgemm_ in the process (LibTorch's own GEMM)")
                           : "sgemm from " + gemm_library;
    if (!openblas_config.empty()) text += " [" + openblas_config + "]";
    if (reference) text += " [reference BLAS]";
    return text;
}

}  // namespace moelab::core

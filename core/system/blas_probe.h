#pragma once

// Which BLAS library this process actually uses for matrix products. Debian's LibTorch calls the
// generic libblas.so.3, which the alternatives system points at OpenBLAS when libopenblas0-pthread
// is installed and at the reference BLAS otherwise; with the reference BLAS matrix products are
// about 25 times slower (5 vs 130 GFLOP/s for a 2048^2 fp32 product on a 2-core machine). OpenBLAS
// may be loaded anyway (through LAPACK), so the probe asks which library provides the `sgemm_`
// symbol the process resolves, not which libraries are loaded.

#include <string>
#include <vector>

namespace moelab::core {

struct BlasInfo {
    std::string gemm_library;      // resolved path of the library providing sgemm_; empty if none
    std::string openblas_config;   // openblas_get_config() of that library, when it is OpenBLAS
    std::vector<std::string> loaded;  // every BLAS-like library loaded, resolved paths
    bool reference = false;        // sgemm_ comes from the slow reference implementation

    std::string description() const;
};

BlasInfo probe_blas();

}  // namespace moelab::core

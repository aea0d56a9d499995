#pragma once

// Which BLAS library this process actually loaded. Debian's LibTorch links the generic
// libblas.so.3, which the alternatives system points at OpenBLAS when libopenblas0-pthread is
// installed and at the reference BLAS otherwise; with the reference BLAS matrix products are about
// 25 times slower (5 vs 130 GFLOP/s for a 2048^2 fp32 product on a 2-core machine).

#include <string>
#include <vector>

namespace moelab::core {

struct BlasInfo {
    std::vector<std::string> libraries;  // resolved paths of loaded BLAS-like libraries
    std::string openblas_config;         // openblas_get_config() when OpenBLAS is loaded
    bool reference = false;              // the slow reference implementation is in use

    std::string description() const;
};

BlasInfo probe_blas();

}  // namespace moelab::core

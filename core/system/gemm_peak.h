#pragma once

// The machine's measured GEMM peak: what model FLOPs utilisation (MFU) is measured against (Note
// [Model FLOPs] in core/model/language_model.h). Measured once per machine and cached, because a
// run's MFU must compare with a number that does not move from run to run.
//
// Measured as the best of 5 square products (2048 on the CPU, 8192 on CUDA) after a warm-up, in
// the dtype the run computes in, with this process's threads. The cache is
// $XDG_CACHE_HOME/moelab/gemm-peak.json (else ~/.cache/moelab/), one entry per key: device, CPU
// model or GPU name, threads, dtype and LibTorch version. Delete the file to measure again, e.g.
// after a first run on a busy machine. MOELAB_GEMM_PEAK_GFLOPS=<number> sets the peak instead of
// measuring it (the test suite does, so that its runs never measure under load).

#include <filesystem>
#include <string>

#include <ATen/ATen.h>

namespace moelab::core {

struct GemmPeak {
    double gflops = 0;        // GFLOP/s
    std::string description;  // "float32 2048^2 on cpu (Intel ..., intra-op 1, BLAS 2 threads)"
    std::string source;       // "measured", "cached in FILE" or "MOELAB_GEMM_PEAK_GFLOPS"
};

// The peak for `dtype` on `device`; throws std::runtime_error when the override is not a positive
// number. A cache that cannot be read or written is measured around (never fatal).
GemmPeak gemm_peak(at::Device device, at::ScalarType dtype);

// The cache file the peak is kept in (see above).
std::filesystem::path gemm_peak_cache_file();

}  // namespace moelab::core

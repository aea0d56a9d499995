#pragma once

// The machine's measured GEMM peak: what model FLOPs utilisation (MFU) is measured against (Note
// [Model FLOPs] in core/model/language_model.h).
//
// Measured at the start of every run as the best of 5 square products (2048 on the CPU, 8192 on
// CUDA) after a warm-up, in the dtype the run computes in, with this process's threads (about half
// a second on a 2-core CPU; the first measurement under a key longer, see below). A product that
// shares the machine with other work measures low (on this project's 2-core machine 126 instead of
// 215 GFLOP/s once), so the peak is the best measurement the machine has given:
// $XDG_CACHE_HOME/moelab/gemm-peak.json (else
// ~/.cache/moelab/) keeps it per key (device, CPU model or GPU name, BLAS threads, dtype,
// LibTorch version; not LibTorch's intra-op threads, which only slow a product down), and every
// run that measures higher raises it. Delete the file to start over (new
// hardware behind the same name). MOELAB_GEMM_PEAK_GFLOPS=<number> sets the peak and measures
// nothing (the test suite does: its runs share the machine).
//
// A virtual machine's neighbours take whole seconds of its cores at a time: on this project's
// 2-core machine the same 2048^2 product ran at 137 GFLOP/s for a second and at 210 the next. A
// peak measured in half a second can land in such a second, and until a better one is cached
// every MFU is too high by the same factor. So the first measurement under a key (a new machine,
// a new cache) keeps multiplying for kFirstPeakSeconds, and `moelab peak --seconds S` measures for
// as long as asked (benchmarks run it first).

#include <filesystem>
#include <string>

#include <ATen/ATen.h>

namespace moelab::core {

struct GemmPeak {
    double gflops = 0;           // GFLOP/s
    std::string description;     // "float32 2048^2 on cpu (Intel ..., intra-op 1, BLAS 2 threads)"
    std::string source;          // "measured", "the best of this machine, cached in FILE; ..."
                                 // or "MOELAB_GEMM_PEAK_GFLOPS"
    double measured_now = 0;     // this call's measurement: its best product (0 with the override)
    double measured_median = 0;  // the median product of this call's measurement
    int products = 0;            // timed products in this call's measurement
    double seconds = 0;          // how long they took together
    double cached_before = 0;    // the cache's best before this call (0: none)
};

// How long the first measurement under a key runs at least (see above).
inline constexpr double kFirstPeakSeconds = 3.0;

// The peak for `dtype` on `device`: the higher of this measurement and the cached best. The
// measurement times at least 5 products and keeps on for `min_seconds` (kFirstPeakSeconds where
// the cache has nothing for the key yet, if that is longer). Throws std::runtime_error when the
// override is not a positive number, std::invalid_argument when `min_seconds` is negative or not
// finite. A cache that cannot be read or written is not fatal: the measurement stands alone, and
// its source says it was not cached.
GemmPeak gemm_peak(at::Device device, at::ScalarType dtype, double min_seconds = 0);

// The cache file the peak is kept in (see above).
std::filesystem::path gemm_peak_cache_file();

}  // namespace moelab::core

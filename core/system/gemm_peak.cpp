#include "core/system/gemm_peak.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include "core/system/atomic_file.h"
#include "core/system/read_file.h"
#include "core/system/threads.h"

namespace moelab::core {

namespace {

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(colon + 1);
                name.erase(0, name.find_first_not_of(' '));
                return name;
            }
        }
    }
    return "unknown CPU";
}

struct Measurement {
    double best_gflops = 0;
    double median_gflops = 0;
    int products = 0;
    double seconds = 0;
};

Measurement measure(at::Device device, at::ScalarType dtype, std::int64_t n, double min_seconds) {
    // Drawn from a generator of its own: a run that measures must leave the global random state
    // exactly as a run that reads the cache does.
    at::Generator generator = at::detail::createCPUGenerator(0);
    const at::Tensor a = at::randn({n, n}, generator).to(device, dtype);
    const at::Tensor b = at::randn({n, n}, generator).to(device, dtype);
    at::Tensor c = at::mm(a, b);
    c.select(0, 0).sum().item<double>();  // warm-up, and on CUDA wait for it
    std::vector<double> took;
    double total = 0;
    while (took.size() < 5 || total < min_seconds) {
        const auto start = std::chrono::steady_clock::now();
        c = at::mm(a, b);
        c.select(0, 0).sum().item<double>();  // waits for the product on CUDA
        const std::chrono::duration<double> one = std::chrono::steady_clock::now() - start;
        took.push_back(one.count());
        total += one.count();
    }
    std::sort(took.begin(), took.end());  // the median: the middle time, the slower of two
    const double flops = 2.0 * static_cast<double>(n) * n * n;
    return {flops / took.front() / 1e9, flops / took[took.size() / 2] / 1e9,
            static_cast<int>(took.size()), total};
}

}  // namespace

std::filesystem::path gemm_peak_cache_file() {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
        return std::filesystem::path(xdg) / "moelab" / "gemm-peak.json";
    }
    const char* home = std::getenv("HOME");
    return std::filesystem::path(home != nullptr ? home : ".") / ".cache" / "moelab" /
           "gemm-peak.json";
}

GemmPeak gemm_peak(at::Device device, at::ScalarType dtype, double min_seconds) {
    if (!(min_seconds >= 0) || !std::isfinite(min_seconds)) {
        throw std::invalid_argument(
            fmt::format("GEMM peak: expected a finite, non-negative time, got {}", min_seconds));
    }
    const bool cuda = device.is_cuda();
    const std::int64_t n = cuda ? 8192 : 2048;
    const ThreadSettings threads = current_threads();
    const std::string hardware =
        cuda ? fmt::format("cuda device {}", device.has_index() ? device.index() : 0)
             : fmt::format("{}, intra-op {}, BLAS {} threads", cpu_model(), threads.intra_op,
                           threads.blas);
    GemmPeak peak;
    peak.description =
        fmt::format("{} {}^2 on {} ({})", dtype == at::kBFloat16 ? "bfloat16" : "float32", n,
                    cuda ? "cuda" : "cpu", hardware);
    if (const char* fixed = std::getenv("MOELAB_GEMM_PEAK_GFLOPS"); fixed != nullptr) {
        char* end = nullptr;
        const double value = std::strtod(fixed, &end);
        if (end == fixed || *end != '\0' || !(value > 0)) {
            throw std::runtime_error(fmt::format(
                "MOELAB_GEMM_PEAK_GFLOPS: expected a positive number of GFLOP/s, got '{}'", fixed));
        }
        peak.gflops = value;
        peak.source = "MOELAB_GEMM_PEAK_GFLOPS";
        return peak;
    }
    // The key leaves LibTorch's intra-op threads out: they do not take part in a product, but
    // while they spin they slow it (on 2 cores intra-op 2 measured 125 GFLOP/s against 207 with
    // 1), and a run whose threads slow its own products must not get a lower peak, which would
    // raise its MFU. The best of the machine at that BLAS width is the reference.
    const std::string key = fmt::format(
        "{} {}^2 on {}|torch {}.{}", dtype == at::kBFloat16 ? "bfloat16" : "float32", n,
        // The CUDA part as the key always had it, so cached GPU peaks still count.
        cuda ? fmt::format("cuda (cuda device {})", device.has_index() ? device.index() : 0)
             : fmt::format("cpu ({}, BLAS {} threads)", cpu_model(), threads.blas),
        TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR);
    const std::filesystem::path file = gemm_peak_cache_file();
    nlohmann::json cache = nlohmann::json::object();
    try {
        if (std::filesystem::is_regular_file(file)) {
            cache = nlohmann::json::parse(read_file(file, 1 << 20, "GEMM peak cache"));
            if (!cache.is_object()) cache = nlohmann::json::object();
        }
    } catch (const std::exception&) {
        cache = nlohmann::json::object();  // damaged: measured again and rewritten
    }
    // Caches written before the key left the intra-op threads out ("..., intra-op N, BLAS ...")
    // count for the key they now stand for.
    double best = 0;
    for (const auto& [cached_key, value] : cache.items()) {
        std::string normalised = cached_key;
        const std::size_t intra_op = normalised.find(", intra-op ");
        if (intra_op != std::string::npos) {
            const std::size_t comma = normalised.find(", ", intra_op + 2);
            if (comma != std::string::npos) normalised.erase(intra_op, comma - intra_op);
        }
        if (normalised == key && value.is_number()) best = std::max(best, value.get<double>());
    }
    peak.cached_before = best;
    const Measurement now = measure(
        device, dtype, n, best > 0 ? min_seconds : std::max(min_seconds, kFirstPeakSeconds));
    peak.measured_now = now.best_gflops;
    peak.measured_median = now.median_gflops;
    peak.products = now.products;
    peak.seconds = now.seconds;
    if (best >= peak.measured_now) {
        peak.gflops = best;
        peak.source = fmt::format("the best of this machine, cached in {}; {:.1f} now",
                                  file.string(), peak.measured_now);
        return peak;
    }
    peak.gflops = peak.measured_now;
    peak.source = "measured";
    try {
        cache[key] = peak.gflops;
        std::filesystem::create_directories(file.parent_path());
        write_file_atomically(file, cache.dump(2) + "\n");
    } catch (const std::exception& error) {
        // Not cached: the next run measures again (for kFirstPeakSeconds, as on a new machine).
        peak.source = fmt::format("measured; not cached: {}", error.what());
    }
    return peak;
}

}  // namespace moelab::core

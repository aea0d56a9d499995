// The GEMM peak MFU is measured against: measured once, then read from the cache (a planted value
// is returned as it is, so nothing is measured again), a damaged cache measured around, and the
// MOELAB_GEMM_PEAK_GFLOPS override taken as given or refused when it is not a positive number.

#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdlib>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/system/gemm_peak.h"
#include "core/system/remove_tree.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class GemmPeakCache : public ::testing::Test {
  protected:
    void SetUp() override {
        saved_override_ = std::getenv("MOELAB_GEMM_PEAK_GFLOPS") != nullptr
                              ? std::getenv("MOELAB_GEMM_PEAK_GFLOPS")
                              : "";
        ::unsetenv("MOELAB_GEMM_PEAK_GFLOPS");
        dir_ = fs::temp_directory_path() / ("moelab-gemm-peak-" + std::to_string(::getpid()));
        core::remove_tree(dir_);
        ::setenv("XDG_CACHE_HOME", dir_.c_str(), 1);
    }
    void TearDown() override {
        if (!saved_override_.empty()) {
            ::setenv("MOELAB_GEMM_PEAK_GFLOPS", saved_override_.c_str(), 1);
        }
        core::remove_tree(dir_);
    }
    std::string saved_override_;
    fs::path dir_;
};

TEST_F(GemmPeakCache, MeasuresOnceThenReadsTheCache) {
    const fs::path file = core::gemm_peak_cache_file();
    EXPECT_EQ(file, dir_ / "moelab" / "gemm-peak.json");
    const core::GemmPeak first = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_EQ(first.source, "measured");
    EXPECT_GT(first.gflops, 0.1);
    ASSERT_TRUE(fs::exists(file));
    nlohmann::json cache = nlohmann::json::parse(std::ifstream(file));
    ASSERT_EQ(cache.size(), 1u);
    EXPECT_DOUBLE_EQ(cache.begin().value().get<double>(), first.gflops);

    // A planted value comes back: the second call reads, it does not measure.
    cache.begin().value() = 1234.5;
    std::ofstream(file) << cache.dump();
    const core::GemmPeak second = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_DOUBLE_EQ(second.gflops, 1234.5);
    EXPECT_EQ(second.source, "cached in " + file.string());

    // A damaged cache is measured around and rewritten.
    std::ofstream(file) << "{ not json";
    const core::GemmPeak third = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_EQ(third.source, "measured");
    EXPECT_NO_THROW(nlohmann::json::parse(std::ifstream(file)));
}

TEST_F(GemmPeakCache, TheOverrideIsTakenAsGivenOrRefused) {
    ::setenv("MOELAB_GEMM_PEAK_GFLOPS", "250", 1);
    const core::GemmPeak fixed = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_DOUBLE_EQ(fixed.gflops, 250.0);
    EXPECT_EQ(fixed.source, "MOELAB_GEMM_PEAK_GFLOPS");
    EXPECT_FALSE(fs::exists(core::gemm_peak_cache_file()));
    for (const char* bad : {"abc", "-3", "0", "12x", ""}) {
        ::setenv("MOELAB_GEMM_PEAK_GFLOPS", bad, 1);
        EXPECT_THROW(core::gemm_peak(at::kCPU, at::kFloat), std::runtime_error) << bad;
    }
    ::unsetenv("MOELAB_GEMM_PEAK_GFLOPS");
}

}  // namespace
}  // namespace moelab::tests

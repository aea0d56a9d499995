// The GEMM peak MFU is measured against: every call measures (a new machine's first call for
// longer), and the cache keeps the best the machine has given (a planted higher value stands, a
// planted lower one is replaced; keys written with the intra-op threads in them still count), a
// damaged cache is measured around, and the MOELAB_GEMM_PEAK_GFLOPS override is taken as given
// (nothing measured, nothing cached) or refused when it is not a positive number.

#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
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

TEST_F(GemmPeakCache, KeepsTheBestMeasurementOfTheMachine) {
    const fs::path file = core::gemm_peak_cache_file();
    EXPECT_EQ(file, dir_ / "moelab" / "gemm-peak.json");
    const core::GemmPeak first = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_EQ(first.source, "measured");
    EXPECT_GT(first.gflops, 0.1);
    EXPECT_DOUBLE_EQ(first.gflops, first.measured_now);
    ASSERT_TRUE(fs::exists(file));
    nlohmann::json cache = nlohmann::json::parse(std::ifstream(file));
    ASSERT_EQ(cache.size(), 1u);
    EXPECT_DOUBLE_EQ(cache.begin().value().get<double>(), first.gflops);
    const std::string key = cache.begin().key();

    // A better value on record (planted: no CPU reaches it) stands, and the file keeps it.
    cache[key] = 1e9;
    std::ofstream(file) << cache.dump();
    const core::GemmPeak best = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_DOUBLE_EQ(best.gflops, 1e9);
    EXPECT_GT(best.measured_now, 0.1);
    EXPECT_LT(best.measured_now, 1e9);
    EXPECT_NE(best.source.find("cached in " + file.string()), std::string::npos) << best.source;
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(std::ifstream(file))[key].get<double>(), 1e9);

    // A worse value on record (a measurement on a busy machine) is replaced by this one.
    cache[key] = 0.001;
    std::ofstream(file) << cache.dump();
    const core::GemmPeak raised = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_EQ(raised.source, "measured");
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(std::ifstream(file))[key].get<double>(), raised.gflops);

    // The key leaves LibTorch's intra-op threads out (they only slow a product); a cache written
    // with them in its keys still counts, the best of any intra-op width.
    EXPECT_EQ(key.find("intra-op"), std::string::npos) << key;
    const std::size_t blas = key.find("BLAS ");
    ASSERT_NE(blas, std::string::npos) << key;
    nlohmann::json old_cache = nlohmann::json::object();
    old_cache[key.substr(0, blas) + "intra-op 1, " + key.substr(blas)] = 1e9;
    old_cache[key.substr(0, blas) + "intra-op 2, " + key.substr(blas)] = 1.0;
    std::ofstream(file) << old_cache.dump();
    EXPECT_DOUBLE_EQ(core::gemm_peak(at::kCPU, at::kFloat).gflops, 1e9);

    // A damaged cache is measured around and rewritten.
    std::ofstream(file) << "{ not json";
    const core::GemmPeak third = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_EQ(third.source, "measured");
    EXPECT_NO_THROW(nlohmann::json::parse(std::ifstream(file)));
}

// A new machine's first measurement keeps on for kFirstPeakSeconds (a short one can land in a
// second the machine's neighbours took); later ones time 5 products unless asked for longer.
TEST_F(GemmPeakCache, TheFirstMeasurementOfAMachineRunsLonger) {
    const core::GemmPeak first = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_DOUBLE_EQ(first.cached_before, 0.0);
    EXPECT_GE(first.seconds, core::kFirstPeakSeconds);
    EXPECT_GE(first.products, 5);
    EXPECT_LE(first.measured_median, first.measured_now);
    const core::GemmPeak second = core::gemm_peak(at::kCPU, at::kFloat);
    EXPECT_DOUBLE_EQ(second.cached_before, first.gflops);
    EXPECT_EQ(second.products, 5);
    const core::GemmPeak longer = core::gemm_peak(at::kCPU, at::kFloat, 0.5);
    EXPECT_GE(longer.seconds, 0.5);
    EXPECT_GE(longer.products, 5);
    EXPECT_DOUBLE_EQ(longer.gflops, std::max(longer.cached_before, longer.measured_now));
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

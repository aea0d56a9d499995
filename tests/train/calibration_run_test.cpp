// Calibration end to end (Note [Calibration] in the SDK's calibration.h): a 4-layer rope run, then
// a uniattn run of the same shape initialised from it whose two reuse layers are fitted to the
// rope run's post-attention streams. The closed-form fit must lower each calibrated layer's error
// against the reference, layer by layer, and a recipe that cannot calibrate is refused by name.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class CalibrationRun : public ::testing::Test {
  protected:
    CalibrationRun() : corpus_(6000) {
        const std::string tiny = (fs::path(MOELAB_SOURCE_DIR) / "tests/recipes/tiny.toml").string();
        // Large initial weights, so that attention moves the stream enough to tell.
        std::ofstream(dir("base.toml"))
            << "extends = \"" << tiny
            << "\"\n[model]\nlayers = 4\ninit_std = 0.3\n[train]\nsteps = 30\n";
        // Layer 0 plain, one SuperBlock {1, 2, 3}: anchor 1, reuse layers 2 and 3. Fitted over
        // every token: 16 positions would not determine a 32 x 32 W_c from position-wise means.
        std::ofstream(dir("uni.toml"))
            << "extends = \"base.toml\"\n[attention]\nplugin = \"uniattn\"\ngroup_size = 3\n"
               "begin = 1\ncalibration_fit = \"tokens\"\n[init]\nfrom = \"base\"\n"
               "calibration_samples = 16\n[train]\nsteps = 2\n";
    }

    CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    fs::path dir(const std::string& name) const { return corpus_.root() / name; }

    TestCorpus corpus_;
};

TEST_F(CalibrationRun, TheClosedFormFitLowersEveryReuseLayersErrorAgainstTheSource) {
    const CommandResult base = moelab("run base.toml --out base");
    ASSERT_EQ(base.exit_code, 0) << base.err << base.out;
    const CommandResult uni = moelab("run uni.toml --out uni");
    ASSERT_EQ(uni.exit_code, 0) << uni.err << uni.out;
    EXPECT_NE(uni.out.find("calibrated layer 2"), std::string::npos) << uni.out;

    std::ifstream in(dir("uni") / "calibration.json");
    const nlohmann::json report = nlohmann::json::parse(in);
    EXPECT_EQ(report["samples"], 16);
    EXPECT_EQ(report["seq"], 16);
    ASSERT_EQ(report["layers"].size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
        const nlohmann::json& layer = report["layers"][i];
        EXPECT_EQ(layer["layer"], 2 + static_cast<int>(i));
        // Reusing the anchor's softmax moves the stream away from the rope model's ...
        EXPECT_GT(layer["rms_error_before"].get<double>(), 1e-3) << layer;
        // ... and the least-squares compensation brings it back part of the way.
        EXPECT_LT(layer["rms_error_after"].get<double>(),
                  0.9 * layer["rms_error_before"].get<double>())
            << layer;
    }
}

TEST_F(CalibrationRun, ARecipeThatCannotCalibrateIsRefusedByKey) {
    const CommandResult no_source = moelab("check uni.toml --set 'init.from=\"\"'");
    EXPECT_EQ(no_source.exit_code, 2);
    EXPECT_NE(no_source.err.find("init.calibration_samples: needs init.from"), std::string::npos)
        << no_source.err;
    const CommandResult rope =
        moelab("check base.toml --set init.calibration_samples=4 --set 'init.from=\"base\"'");
    EXPECT_EQ(rope.exit_code, 2);
    EXPECT_NE(rope.err.find("init.calibration"), std::string::npos) << rope.err;
    EXPECT_NE(rope.err.find("attention"), std::string::npos) << rope.err;
}

}  // namespace
}  // namespace moelab::tests

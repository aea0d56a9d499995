// `moelab plugins test`: every built-in router and tokenizer passes the conformance kit, and the
// kit fails, with the right reason, on routers and tokenizers that each break one rule
// (tests/plugin/fixtures/kit_routers.cpp, kit_tokenizers.cpp).

#include <gtest/gtest.h>

#include <filesystem>

#include "support/subprocess.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

CommandResult kit(const std::string& target) {
    const fs::path fixtures(MOELAB_FIXTURE_DIR);
    const std::string path = shell_quote((fixtures / "kit_routers").string() + ":" +
                                         (fixtures / "kit_tokenizers").string());
    return run_command("MOELAB_PLUGIN_PATH=" + path + " " + shell_quote(MOELAB_BINARY) +
                       " plugins test " + target);
}

class BuiltInRouter : public ::testing::TestWithParam<std::string> {};

TEST_P(BuiltInRouter, PassesTheConformanceKit) {
    const CommandResult result = kit(GetParam());
    EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
    EXPECT_NE(result.out.find("router '" + GetParam() + "'"), std::string::npos) << result.out;
    EXPECT_EQ(result.out.find("FAIL"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("perturbation forced_balance"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("\npassed\n"), std::string::npos) << result.out;
}

INSTANTIATE_TEST_SUITE_P(Routers, BuiltInRouter,
                         ::testing::Values("topk", "topp", "hash", "maskmoe", "cartesian", "dsmoe",
                                           "finedeep"),
                         [](const auto& info) { return info.param; });

struct Defect {
    std::string component;
    std::string check;
    std::string reason;
};

class DefectiveComponent : public ::testing::TestWithParam<Defect> {};

TEST_P(DefectiveComponent, FailsTheKitWithTheReason) {
    const Defect& defect = GetParam();
    const CommandResult result = kit(defect.component);
    EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
    const auto row = result.out.find(defect.check);
    ASSERT_NE(row, std::string::npos) << result.out;
    const std::string line = result.out.substr(row, result.out.find('\n', row) - row);
    EXPECT_NE(line.find("FAIL"), std::string::npos) << line;
    EXPECT_NE(line.find(defect.reason), std::string::npos) << line;
    EXPECT_NE(result.out.find("\nFAILED\n"), std::string::npos) << result.out;
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, DefectiveComponent,
    ::testing::Values(Defect{"kit-lossy", "lossless round trip",
                             "decode(encode(unseen words)) differs at byte 0"},
                      Defect{"kit-id-out-of-range", "ids and special tokens in range",
                             "gave id 256, outside [0, 256)"},
                      Defect{"kit-nondeterministic-training", "deterministic training",
                             "training twice on the same text with the same options gives "
                             "different tokenizers"}),
    [](const auto& info) {
        std::string name = info.param.component;
        for (char& c : name) c = c == '-' ? '_' : c;
        return name;
    });

INSTANTIATE_TEST_SUITE_P(
    Fixtures, DefectiveComponent,
    ::testing::Values(
        Defect{"kit-out-of-range", "decision contract",
               "expert_indices must be in [-1, 8) (-1: empty slot), got values from 8 to"},
        Defect{"kit-detached", "gradients reach every parameter",
               "no gradient from the loss: block.router.weight"},
        Defect{"kit-ignores-selection", "perturbation disable_top",
               "lists perturbation.disable_top but router 0 never handed its scores"},
        Defect{"kit-vector-aux", "decision contract",
               "aux_losses['balance'] must be a floating-point scalar (one element)"},
        Defect{"kit-nondeterministic", "determinism under a seed",
               "two layers built with the same seed give different outputs"},
        Defect{"kit-local-balance", "a batch split over processes",
               "of a batch split over 2 processes averages to"}),
    [](const auto& info) {
        std::string name = info.param.component;
        for (char& c : name) c = c == '-' ? '_' : c;
        return name;
    });

class BuiltInTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(BuiltInTokenizer, PassesTheConformanceKit) {
    const CommandResult result = kit(GetParam());
    EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
    EXPECT_NE(result.out.find("tokenizer '" + GetParam() + "'"), std::string::npos) << result.out;
    EXPECT_EQ(result.out.find("FAIL"), std::string::npos) << result.out;
    for (const char* check : {"lossless round trip", "serialize -> load round trip"}) {
        const auto row = result.out.find(check);
        ASSERT_NE(row, std::string::npos) << check << "\n" << result.out;
        EXPECT_NE(result.out.substr(row, result.out.find('\n', row) - row).find("pass"),
                  std::string::npos)
            << result.out;
    }
    EXPECT_NE(result.out.find("\npassed\n"), std::string::npos) << result.out;
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, BuiltInTokenizer,
                         ::testing::Values("bytes", "bpe", "lbpe", "scaffold-bpe"),
                         [](const auto& info) {
                             std::string name = info.param;
                             for (char& c : name) c = c == '-' ? '_' : c;
                             return name;
                         });

TEST(PluginsTest, TheBuiltInAttentionsPassIncludingTheirCachesAndAStackOfLayers) {
    // uniattn's default layout on the kit's 4-layer stack: layer 2 hands its softmax to layer 3.
    for (const char* attention : {"rope", "harpe", "pi", "uniattn"}) {
        const CommandResult result = kit(attention);
        EXPECT_EQ(result.exit_code, 0) << attention << "\n" << result.out << result.err;
        for (const char* check :
             {"causality", "cache equals recomputation", "checkpoint round trip",
              "a stack of layers sharing the forward state"}) {
            const auto row = result.out.find(check);
            ASSERT_NE(row, std::string::npos) << attention << ": " << check << "\n" << result.out;
            EXPECT_NE(result.out.substr(row, result.out.find('\n', row) - row).find("pass"),
                      std::string::npos)
                << attention << "\n"
                << result.out;
        }
    }
}

TEST(PluginsTest, AnUnknownComponentIsAUsageError) {
    const CommandResult result = kit("topkk");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_NE(result.err.find("no component named 'topkk' (did you mean 'topk'?)"),
              std::string::npos)
        << result.err;
}

}  // namespace
}  // namespace moelab::tests

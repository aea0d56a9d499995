// The CLI on good input: the shipped recipes pass `check`, the printed resolved recipe is itself a
// valid recipe that resolves to the same text, and usage errors exit with 2.

#include <gtest/gtest.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

std::string moelab() { return shell_quote(MOELAB_BINARY); }

std::string recipe_path(const std::string& name) {
    return shell_quote((fs::path(MOELAB_SOURCE_DIR) / "recipes" / name).string());
}

class ShippedRecipe : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedRecipe, PassesCheckAndItsResolvedFormResolvesIdentically) {
    const TestCorpus corpus;
    // Recipes that start from another run (init.from = "runs/dense-baseline") need a checkpoint
    // there for check to pass; check looks for the files, not into them.
    for (const char* run : {"dense-baseline", "harpe/pretrain"}) {
        const fs::path source = corpus.root() / "runs" / run / "checkpoints" / "step-1";
        fs::create_directories(source);
        std::ofstream(source / "model.safetensors");
        std::ofstream(source / "state.json");
    }
    const std::string cd = "cd " + shell_quote(corpus.root().string()) + " && ";
    const CommandResult first = run_command(cd + moelab() + " check " + recipe_path(GetParam()) +
                                            " --set data.corpus=corpus");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    ASSERT_NE(first.out.find("[model]"), std::string::npos);

    const fs::path resolved = corpus.root() / "resolved.toml";
    std::ofstream(resolved) << first.out;
    const CommandResult second = run_command(cd + moelab() + " check resolved.toml");
    ASSERT_EQ(second.exit_code, 0) << second.err;
    // Identical apart from the "# resolved from <file>" line.
    auto body = [](const std::string& text) { return text.substr(text.find('\n') + 1); };
    EXPECT_EQ(body(first.out), body(second.out));
}

INSTANTIATE_TEST_SUITE_P(
    Recipes, ShippedRecipe,
    ::testing::Values(
        "quickstart.toml", "dense-baseline.toml", "routers/topk.toml", "routers/smoe-share.toml",
        "routers/topp.toml", "routers/hash.toml", "routers/maskmoe.toml", "routers/cartesian.toml",
        "routers/finedeep.toml", "routers/dsmoe.toml", "routers/dsmoe-tau/tau-0.9.toml",
        "routers/deepseek.toml", "routers/expert_choice.toml", "routers/topk-sequence-balance.toml",
        "routers/topk-accum4.toml", "routers/topk-global-balance.toml",
        "compare/robustness/deepseek.toml", "compare/robustness/expert-choice.toml",
        "tokenizers/bpe.toml", "tokenizers/lbpe.toml", "tokenizers/scaffold-bpe.toml",
        "data/brown-genres.toml", "stages/norms-then-all.toml", "attention/harpe/pretrain.toml",
        "attention/harpe/extend-rope.toml", "attention/harpe/extend-pi.toml",
        "attention/harpe/extend-abf.toml", "attention/harpe/extend-abf-multi.toml",
        "attention/harpe/extend-harpe.toml", "attention/harpe/extend-harpe-uniform.toml"),
    [](const auto& info) {
        std::string name = info.param.substr(0, info.param.find('.'));
        for (char& c : name) c = std::isalnum(c) ? c : '_';
        return name;
    });

TEST(Cli, VersionReportsVersionsAndBlas) {
    const CommandResult result = run_command(moelab() + " --version");
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("plugin SDK "), std::string::npos);
    EXPECT_NE(result.out.find("plugin ABI "), std::string::npos);
    EXPECT_NE(result.out.find("LibTorch "), std::string::npos);
    EXPECT_NE(result.out.find("BLAS: "), std::string::npos);
}

TEST(Cli, VersionWarnsWhenTheReferenceBlasDoesTheMatrixProducts) {
    const CommandResult normal = run_command(moelab() + " --version");
    EXPECT_EQ(normal.out.find("warning: the reference BLAS"), std::string::npos) << normal.out;
    // Debian installs the reference implementation here; putting it first on the library path makes
    // it provide sgemm_ even though OpenBLAS is loaded too (through LAPACK).
    const std::string reference_dir = "/usr/lib/x86_64-linux-gnu/blas";
    if (!fs::exists(reference_dir + "/libblas.so.3")) GTEST_SKIP() << "no reference BLAS installed";
    const CommandResult slow =
        run_command("LD_LIBRARY_PATH=" + reference_dir + " " + moelab() + " --version");
    EXPECT_EQ(slow.exit_code, 0);
    EXPECT_NE(slow.out.find("sgemm from " + reference_dir + "/libblas.so.3"), std::string::npos)
        << slow.out;
    EXPECT_NE(slow.out.find("warning: the reference BLAS is loaded"), std::string::npos)
        << slow.out;
}

// `moelab peak` measures for as long as asked, raises the cache runs read and says what it found;
// its figures are those of the cache file it wrote.
TEST(Cli, PeakMeasuresForTheSecondsAskedAndKeepsTheBest) {
    const TempDir cache("moelab-cli-peak");  // removed however the test ends
    const std::string env =
        "env -u MOELAB_GEMM_PEAK_GFLOPS XDG_CACHE_HOME=" + shell_quote(cache.path().string()) + " ";
    const CommandResult result = run_command(env + moelab() + " peak --seconds 1");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("float32 2048^2 on cpu"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("cached before: nothing under this key"), std::string::npos)
        << result.out;
    // The first measurement on a machine runs at least kFirstPeakSeconds, whatever was asked.
    double best = 0, median = 0, seconds = 0;
    int products = 0;
    const std::size_t at = result.out.find("measured now: ");
    ASSERT_NE(at, std::string::npos) << result.out;
    ASSERT_EQ(std::sscanf(result.out.c_str() + at,
                          "measured now: best %lf GFLOP/s, median %lf, of %d products in %lf s",
                          &best, &median, &products, &seconds),
              4)
        << result.out;
    EXPECT_GE(products, 5);
    EXPECT_GE(seconds, 2.95);
    EXPECT_LE(median, best);
    const nlohmann::json cached =
        nlohmann::json::parse(std::ifstream(cache / "moelab" / "gemm-peak.json"));
    ASSERT_EQ(cached.size(), 1u) << cached.dump();
    EXPECT_NEAR(cached.begin().value().get<double>(), best, 0.05 + 1e-3 * best);

    // With a best on record, the seconds asked; the reference is the better of the two.
    const CommandResult again = run_command(env + moelab() + " peak --seconds 0");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_NE(again.out.find("cached before: "), std::string::npos);
    EXPECT_EQ(again.out.find("nothing under this key"), std::string::npos) << again.out;
    EXPECT_NE(again.out.find("of 5 products"), std::string::npos) << again.out;

    // Usage errors name the option; an override measures nothing and says so.
    for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
             {"--seconds -1", "--seconds: expected 0 to 3600, got -1"},
             {"--device tpu", "--device: expected cpu or cuda, got 'tpu'"},
             {"--dtype float16", "--dtype: expected float32 or bfloat16, got 'float16'"},
             {"--dtype bfloat16", "runs compute in bfloat16 on CUDA only"}}) {
        const CommandResult bad = run_command(env + moelab() + " peak " + args);
        EXPECT_EQ(bad.exit_code, 2) << args;
        EXPECT_NE(bad.err.find(message), std::string::npos) << bad.err;
    }
    const CommandResult fixed =
        run_command("MOELAB_GEMM_PEAK_GFLOPS=100 " + moelab() + " peak --seconds 0");
    EXPECT_EQ(fixed.exit_code, 2);
    EXPECT_NE(fixed.err.find("MOELAB_GEMM_PEAK_GFLOPS is set"), std::string::npos) << fixed.err;
}

TEST(Cli, PluginsListsBuiltinsWithKindVersionAndFile) {
    const CommandResult result = run_command("env -u MOELAB_PLUGIN_PATH " + moelab() + " plugins");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    for (const char* expected :
         {"topk", "router", "rope", "attention", "bytes", "tokenizer", "moelab-plugin-topk.so"}) {
        EXPECT_NE(result.out.find(expected), std::string::npos) << expected << "\n" << result.out;
    }
}

TEST(Cli, HarpeIsListedWithItsOptionsAndItsBaseSearchRunsAsACommand) {
    const CommandResult info = run_command(moelab() + " plugins info harpe");
    ASSERT_EQ(info.exit_code, 0) << info.err;
    for (const char* option : {"bases", "b_min", "b_max", "stride", "window", "list"}) {
        EXPECT_NE(info.out.find(option), std::string::npos) << option << "\n" << info.out;
    }
    const CommandResult search =
        run_command(moelab() +
                    " harpe-bases --heads 4 --min 1e4 --max 5e4 --stride 2e3 "
                    "--head-dim 16 --window 2048 --json");
    ASSERT_EQ(search.exit_code, 0) << search.err;
    const nlohmann::json result = nlohmann::json::parse(search.out);
    ASSERT_EQ(result["bases"].size(), 4u);
    EXPECT_EQ(result["bases"][0], 1e4);
    EXPECT_EQ(result["candidates"], 21);
    EXPECT_TRUE(result["table2"].is_null()) << "4 heads are not Table 2's 32";
    const CommandResult table = run_command(moelab() +
                                            " harpe-bases --heads 4 --min 1e4 --max "
                                            "5e4 --stride 2e3 --head-dim 16 --window 2048");
    EXPECT_NE(table.out.find("HARPE base search: 4 heads from 21 candidate bases"),
              std::string::npos)
        << table.out;
    const CommandResult too_few =
        run_command(moelab() + " harpe-bases --heads 8 --min 1e4 --max 2e4 --stride 5e3");
    EXPECT_EQ(too_few.exit_code, 2);
    EXPECT_NE(too_few.err.find("stride: (b_max - b_min) / stride gives 2 candidates"),
              std::string::npos)
        << too_few.err;
}

TEST(Cli, PluginsInfoShowsTheSchema) {
    const CommandResult result = run_command(moelab() + " plugins info topk");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("k (integer, [1, 4096]), default 2"), std::string::npos)
        << result.out;
    EXPECT_NE(result.out.find("balance_coef (float, >= 0), default 0.01"), std::string::npos)
        << result.out;
}

// The features a component lists, as its plugin registers them: expert_choice honours every
// selection perturbation but forced_balance and runs with sharded experts, not split batches.
TEST(Cli, PluginsInfoShowsTheFeatures) {
    const CommandResult result = run_command(moelab() + " plugins info expert_choice");
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("features: perturbation.disable_top, perturbation.logit_noise, "
                              "perturbation.expert_dropout, perturbation.random_routing, "
                              "parallel.sharded_experts\n"),
              std::string::npos)
        << result.out;
}

TEST(Cli, UnknownComponentInInfoSuggestsAndExitsTwo) {
    const CommandResult result = run_command(moelab() + " plugins info topkk");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_NE(result.err.find("did you mean 'topk'?"), std::string::npos) << result.err;
}

TEST(Cli, UsageErrorsExitTwo) {
    EXPECT_EQ(run_command(moelab()).exit_code, 2);
    EXPECT_EQ(run_command(moelab() + " frobnicate").exit_code, 2);
    EXPECT_EQ(run_command(moelab() + " check").exit_code, 2);
    EXPECT_EQ(run_command(moelab() + " --help").exit_code, 0);
}

TEST(Cli, MalformedSetIsAUsageError) {
    const TestCorpus corpus;
    const CommandResult result =
        run_command("cd " + shell_quote(corpus.root().string()) + " && " + moelab() + " check " +
                    recipe_path("quickstart.toml") + " --set train.steps");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_NE(result.err.find("expected section.key=value"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace moelab::tests

// `moelab generate` and `moelab eval --context/--passkey` end to end on a tiny trained run.

#include <gtest/gtest.h>

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/assembly/loaded_recipe.h"
#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "support/run_files.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class TrainedRun : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        corpus_ = new TestCorpus(6000);
        const CommandResult run = moelab(
            "run " + shell_quote(MOELAB_SOURCE_DIR + std::string("/tests/recipes/tiny.toml")) +
            " --out a");
        ASSERT_EQ(run.exit_code, 0) << run.err;
    }
    static void TearDownTestSuite() {
        delete corpus_;
        corpus_ = nullptr;
    }

    static CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_->root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    static fs::path dir(const std::string& name) { return corpus_->root() / name; }

    static TestCorpus* corpus_;
};
TestCorpus* TrainedRun::corpus_ = nullptr;

TEST_F(TrainedRun, GenerateStreamsTheSampleAndReportsSpeeds) {
    const CommandResult out = moelab("generate a --prompt 'the model' --max-new 24 --seed 3");
    ASSERT_EQ(out.exit_code, 0) << out.err;
    EXPECT_EQ(out.out.rfind("the model", 0), 0u) << out.out;
    EXPECT_GT(out.out.size(), std::string("the model\n").size());
    EXPECT_NE(out.err.find("prefill: 10 tokens in"), std::string::npos) << out.err;
    EXPECT_NE(out.err.find("tokens/s, 1 sequence)"), std::string::npos) << out.err;
    // The same seed, the same text.
    EXPECT_EQ(moelab("generate a --prompt 'the model' --max-new 24 --seed 3").out, out.out);
}

TEST_F(TrainedRun, GenerateIsTheGreedyContinuationOfTheModelEvalAssembles) {
    const CommandResult out =
        moelab("generate a --prompt 'the model' --max-new 12 --temperature 0");
    ASSERT_EQ(out.exit_code, 0) << out.err;
    // The model as `moelab eval` builds it; greedy decoding by full forwards, no cache.
    const fs::path cwd = fs::current_path();
    fs::current_path(corpus_->root());
    const auto loaded = core::load_and_resolve("a/recipe.resolved.toml", {});
    const fs::path step = core::resolve_checkpoint("a");
    const core::TrainedModel trained(loaded->resolved, "a", step, core::DeviceChoice::kCpu,
                                     [](const std::string&) {});
    fs::current_path(cwd);
    torch::NoGradGuard no_grad;
    trained.model().eval();
    const sdk::Tokenizer& tokenizer = trained.dataset().tokenizer();
    std::vector<std::int32_t> ids{tokenizer.special_tokens().eos};
    tokenizer.encode("the model", ids);
    const std::size_t prompt = ids.size();
    for (int i = 0; i < 12; ++i) {
        const at::Tensor tokens =
            at::tensor(std::vector<std::int64_t>(ids.begin(), ids.end())).view({1, -1});
        const at::Tensor logits = trained.model().forward(tokens, {}).logits[0][-1];
        const auto next = static_cast<std::int32_t>(logits.argmax().item<std::int64_t>());
        if (next == tokenizer.special_tokens().eos) break;
        ids.push_back(next);
    }
    const std::string expected =
        "the model" + tokenizer.decode(std::span<const std::int32_t>(ids).subspan(prompt)) + "\n";
    EXPECT_EQ(out.out, expected);
}

TEST_F(TrainedRun, GenerateStatsMeasureTheCacheAgainstRecomputation) {
    const CommandResult out =
        moelab("generate a --prompt 'a token' --max-new 32 --temperature 0 --stats");
    ASSERT_EQ(out.exit_code, 0) << out.err;
    EXPECT_NE(out.out.find("same tokens: yes"), std::string::npos) << out.out;
    EXPECT_NE(out.out.find("the cache is"), std::string::npos) << out.out;
    // tiny.toml: 2 layers of rope attention, 4 heads of 8 dimensions, float32.
    EXPECT_NE(out.out.find("KV-cache bytes per token: 528"), std::string::npos) << out.out;
    const auto records = metrics_records(dir("a"), "generate");
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records.back()["new_tokens"], 32);
    EXPECT_EQ(records.back()["same_tokens"], true);
    EXPECT_GT(records.back()["cache_speedup"].get<double>(), 0.0);
}

TEST_F(TrainedRun, GenerateDecodesABatchOfPromptsOfDifferentLengths) {
    const CommandResult out = moelab(
        "generate a --batch --prompt 'a' --prompt 'every small expert' --max-new 8 "
        "--temperature 0");
    ASSERT_EQ(out.exit_code, 0) << out.err;
    EXPECT_EQ(out.out.rfind("[0] a", 0), 0u) << out.out;
    EXPECT_NE(out.out.find("\n[1] every small expert"), std::string::npos) << out.out;
    // Each prompt alone gives its row of the batch.
    const CommandResult alone =
        moelab("generate a --prompt 'every small expert' --max-new 8 --temperature 0");
    EXPECT_NE(out.out.find("[1] " + alone.out), std::string::npos) << out.out << alone.out;
}

TEST_F(TrainedRun, GenerateRefusesBadArgumentsWithExitTwo) {
    const std::vector<std::pair<const char*, const char*>> cases{
        {"generate a", "no prompt"},
        {"generate a --prompt x --top-p 0", "--top-p must be in (0, 1]"},
        {"generate a --prompt x --prompt y", "add --batch"},
        {"generate a --prompt x --max-new 0", "--max-new"},
        {"generate a --prompt x --temperature -1", "--temperature"},
        {"generate a --prompt-file missing.txt", "--prompt-file: missing.txt"},
        {"generate nowhere --prompt x", "nowhere: no such run directory or checkpoint"}};
    for (const auto& [arguments, message] : cases) {
        const CommandResult out = moelab(arguments);
        EXPECT_EQ(out.exit_code, 2) << arguments << ": " << out.err;
        EXPECT_NE(out.err.find(message), std::string::npos) << arguments << ": " << out.err;
    }
}

TEST_F(TrainedRun, EvalMeasuresPerplexityByContextLengthAndThePasskey) {
    const CommandResult out = moelab("eval a --context 8,16 --stride 4");
    ASSERT_EQ(out.exit_code, 0) << out.err;
    EXPECT_NE(out.out.find("perplexity by context length"), std::string::npos) << out.out;
    auto records = metrics_records(dir("a"), "long_context");
    ASSERT_FALSE(records.empty());
    const nlohmann::json record = records.back();
    ASSERT_EQ(record["perplexity"].size(), 2u);
    EXPECT_EQ(record["perplexity"][0]["context"], 8);
    // Both lengths score every target of the same documents once.
    EXPECT_EQ(record["perplexity"][0]["tokens"], record["perplexity"][1]["tokens"]);
    EXPECT_EQ(record["perplexity"][1]["stride"], 4);
    EXPECT_GT(record["perplexity"][1]["ppl"].get<double>(), 1.0);

    const CommandResult passkey =
        moelab("eval a --context 16,300 --passkey --depths 0,1 --trials 2 --max-tokens 1000");
    ASSERT_EQ(passkey.exit_code, 0) << passkey.err;
    EXPECT_NE(passkey.out.find("passkey accuracy"), std::string::npos) << passkey.out;
    // 16 tokens cannot hold the prompt's fixed parts: n/a with the reason, never a number.
    EXPECT_NE(passkey.out.find("n/a    n/a  (a prompt of 16 tokens cannot hold"), std::string::npos)
        << passkey.out;
    records = metrics_records(dir("a"), "long_context");
    const nlohmann::json& cells = records.back()["passkey"]["cells"];
    ASSERT_EQ(cells.size(), 4u);
    EXPECT_TRUE(cells[0]["accuracy"].is_null());
    EXPECT_EQ(cells[2]["length"], 300);
    EXPECT_EQ(cells[2]["trials"], 2);
    EXPECT_EQ(records.back()["passkey"]["trials"], 4);

    const CommandResult too_long = moelab("eval a --context 100000");
    EXPECT_EQ(too_long.exit_code, 2);
    EXPECT_NE(too_long.err.find("no validation document has that many tokens"), std::string::npos)
        << too_long.err;
}

}  // namespace
}  // namespace moelab::tests

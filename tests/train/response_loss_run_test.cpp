// `moelab run` on (prompt, response) pairs end to end (Note [Response-only loss]): the loss and
// the evaluation count exactly the response tokens (and the end-of-document id after each), which
// the byte tokenizer lets the test count by hand; gradient accumulation gives the loss and the
// gradient of one large batch; a malformed pair names its file, line and field.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "support/run_files.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class PairsRun : public ::testing::Test {
  protected:
    PairsRun() {
        fs::create_directories(dir("sft"));
        std::uint32_t state = 777;
        auto next = [&state](std::uint32_t bound) {
            state = state * 1664525u + 1013904223u;
            return (state >> 8) % bound;
        };
        for (const auto& [split, pairs] :
             {std::pair<const char*, int>{"train", 400}, {"validation", 60}, {"test", 60}}) {
            std::ofstream out(dir("sft") / (std::string(split) + ".jsonl"));
            Counts& counts = counts_[split];
            for (int i = 0; i < pairs; ++i) {
                const std::uint32_t a = next(50), b = next(50);
                // Prompts of different lengths, so that micro-batches count different numbers of
                // targets, but shorter than a window (at most 8 + 6 of its 16 targets), so that
                // every window counts some.
                const std::string prompt =
                    std::string(next(9), '.') + std::to_string(a) + "+" + std::to_string(b) + "=";
                const std::string response = std::to_string(a + b);
                out << nlohmann::json{{"question", prompt}, {"answer", response}}.dump() << "\n";
                // Byte tokens: the prompt's bytes, the response's, the end-of-document id.
                counts.tokens += static_cast<std::int64_t>(prompt.size() + response.size() + 1);
                counts.loss_tokens += static_cast<std::int64_t>(response.size() + 1);
            }
        }
        std::ofstream(dir("sft.toml"))
            << "extends = \""
            << (fs::path(MOELAB_SOURCE_DIR) / "tests/recipes/tiny-dense.toml").string()
            << "\"\n\n[[data.source]]\nname = \"sft\"\ndir = \"sft\"\nformat = \"pairs\"\n"
               "prompt_field = \"question\"\nresponse_field = \"answer\"\n";
    }

    CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    fs::path dir(const std::string& name) const { return corpus_.root() / name; }

    struct Counts {
        std::int64_t tokens = 0, loss_tokens = 0;
    };
    TestCorpus corpus_;
    std::map<std::string, Counts> counts_;
};

TEST_F(PairsRun, TheLossAndTheEvaluationCountResponsesOnly) {
    const CommandResult stats = moelab("data stats sft.toml --json");
    ASSERT_EQ(stats.exit_code, 0) << stats.err;
    const nlohmann::json splits = nlohmann::json::parse(stats.out)["splits"];
    ASSERT_EQ(splits.size(), 3u);
    for (const nlohmann::json& split : splits) {
        const Counts& expected = counts_.at(split["split"].get<std::string>());
        EXPECT_EQ(split["tokens"], expected.tokens) << split.dump();
        EXPECT_EQ(split["loss_tokens"], expected.loss_tokens) << split.dump();
    }
    const CommandResult table = moelab("data stats sft.toml");
    EXPECT_NE(table.out.find("sft train: the loss counts " +
                             std::to_string(counts_.at("train").loss_tokens) + " of " +
                             std::to_string(counts_.at("train").tokens) + " tokens"),
              std::string::npos)
        << table.out;

    const CommandResult run =
        moelab("run sft.toml --out a --set train.steps=4 --set eval.max_batches=0");
    ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
    const auto train = metrics_records(dir("a"), "train");
    ASSERT_EQ(train.size(), 4u);
    for (const auto& record : train) {
        // 4 windows of 16 targets, each with a response; responses are a minority of tokens.
        EXPECT_GE(record.value("loss_tokens", 0), 4) << record.dump();
        EXPECT_LT(record.value("loss_tokens", 0), 4 * 16 / 2) << record.dump();
    }
    // The first validation token is a prompt's (never a target); every response token and
    // end-of-document id is predicted once.
    const nlohmann::json summary = read_json_file(dir("a") / "summary.json");
    EXPECT_EQ(summary["validation"]["tokens"], counts_.at("validation").loss_tokens);
    EXPECT_EQ(summary["test"]["tokens"], counts_.at("test").loss_tokens);

    const CommandResult eval = moelab("eval a --split validation --json");
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    EXPECT_EQ(nlohmann::json::parse(eval.out)["tokens"], counts_.at("validation").loss_tokens)
        << eval.out;
}

// Two micro-batches of 2 sequences make the same step as one batch of 4: the loss is the mean over
// the step's counted targets, not the mean of the micro-batches' means (which would differ, since
// their counts differ), so the loss and the gradient norm agree.
TEST_F(PairsRun, GradientAccumulationGivesTheLossAndGradientOfOneLargeBatch) {
    const std::string step =
        "run sft.toml --set train.steps=1 --set train.warmup_steps=0 --set eval.max_batches=1";
    ASSERT_EQ(moelab(step + " --out one --set train.batch_size=4").exit_code, 0);
    ASSERT_EQ(
        moelab(step + " --out two --set train.batch_size=2 --set train.grad_accum=2").exit_code, 0);
    const nlohmann::json one = metrics_records(dir("one"), "train").at(0);
    const nlohmann::json two = metrics_records(dir("two"), "train").at(0);
    ASSERT_GT(one.value("loss_tokens", 0), 0) << one.dump();
    EXPECT_EQ(one["loss_tokens"], two["loss_tokens"]);
    EXPECT_NEAR(two["lm_loss"].get<double>() / one["lm_loss"].get<double>(), 1.0, 1e-6);
    EXPECT_NEAR(two["grad_norm"].get<double>() / one["grad_norm"].get<double>(), 1.0, 1e-5);
}

TEST_F(PairsRun, PairFieldsOutsideAPairsSourceAreRecipeErrors) {
    std::ofstream(dir("fields.toml"))
        << "extends = \"sft.toml\"\n\n[[data.source]]\nname = \"sft\"\ndir = \"sft\"\n"
           "format = \"jsonl\"\nprompt_field = \"question\"\n";
    const CommandResult fields = moelab("check fields.toml");
    EXPECT_EQ(fields.exit_code, 2);
    EXPECT_NE(fields.err.find("data.source[0].prompt_field: applies to format = \"pairs\" only, "
                              "but format = \"jsonl\""),
              std::string::npos)
        << fields.err;
    std::ofstream(dir("same.toml"))
        << "extends = \"sft.toml\"\n\n[[data.source]]\nname = \"sft\"\ndir = \"sft\"\n"
           "format = \"pairs\"\nprompt_field = \"q\"\nresponse_field = \"q\"\n";
    const CommandResult same = moelab("check same.toml");
    EXPECT_EQ(same.exit_code, 2);
    EXPECT_NE(same.err.find("response_field: is the same field as prompt_field (\"q\")"),
              std::string::npos)
        << same.err;
}

TEST_F(PairsRun, AMalformedPairNamesItsFileLineAndField) {
    std::ofstream(dir("sft") / "validation.jsonl", std::ios::app) << "{\"question\": \"q\"}\n";
    const CommandResult run =
        moelab("run sft.toml --out bad --set train.steps=1 --set train.warmup_steps=0");
    EXPECT_EQ(run.exit_code, 1) << run.err;
    EXPECT_NE(run.err.find("validation.jsonl: line 61: no field \"answer\" (expected the response "
                           "there; set the source's response_field"),
              std::string::npos)
        << run.err;
}

}  // namespace
}  // namespace moelab::tests

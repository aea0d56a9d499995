// Routing traces end to end: `moelab eval --trace` on a tiny trained run, then `--replay`, which
// must reproduce the evaluation loss bit for bit, also when the run's router is configured
// otherwise (proof that the recorded routing, not the router, decided); the Python reader's
// counts; and every mismatch refused with a message and exit 2.

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

// tests/recipes/tiny.toml: 2 MoE layers of 4 experts, top-2, sequences of 16 bytes; evaluations
// of 3 batches of 8 sequences, 384 tokens.
std::string recipe() {
    return tiny_recipe_file() + " --set train.steps=30 --set eval.max_batches=3";
}

class RoutingTrace : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        corpus_ = new TestCorpus(3000);
        for (const auto& [out, set] : {std::pair{"run", ""}, {"eight", "--set moe.experts=8"}}) {
            const CommandResult run = run_command(
                fmt::format("cd {} && {} run {} --out {} {}", shell_quote(corpus_->root().string()),
                            shell_quote(MOELAB_BINARY), recipe(), out, set));
            ASSERT_EQ(run.exit_code, 0) << run.err;
        }
    }
    static void TearDownTestSuite() { delete corpus_; }

    static CommandResult eval(const std::string& arguments) {
        return run_command(fmt::format("cd {} && {} eval {}", shell_quote(corpus_->root().string()),
                                       shell_quote(MOELAB_BINARY), arguments));
    }
    static nlohmann::json eval_json(const std::string& arguments) {
        const CommandResult result = eval(arguments + " --json");
        EXPECT_EQ(result.exit_code, 0) << arguments << "\n" << result.err;
        return result.exit_code == 0 ? nlohmann::json::parse(result.out) : nlohmann::json();
    }

    static TestCorpus* corpus_;
};

TestCorpus* RoutingTrace::corpus_ = nullptr;

TEST_F(RoutingTrace, ReplayReproducesTheLossExactlyWhateverTheRouterWouldDo) {
    const nlohmann::json traced = eval_json("run --trace trace.st");
    ASSERT_FALSE(traced.is_null());
    EXPECT_EQ(traced["trace"]["tokens"].get<std::int64_t>(), 3 * 8 * 16);
    const nlohmann::json replayed = eval_json("run --replay trace.st");
    ASSERT_FALSE(replayed.is_null());
    // Bit for bit: the same experts, the same fp32 weights, the same arithmetic.
    EXPECT_EQ(replayed["loss"].get<double>(), traced["loss"].get<double>());

    // With k = 1 the router would route otherwise (another loss); replayed, the trace decides.
    const nlohmann::json top1 = eval_json("run --set router.k=1");
    const nlohmann::json top1_replayed = eval_json("run --set router.k=1 --replay trace.st");
    ASSERT_FALSE(top1.is_null());
    ASSERT_FALSE(top1_replayed.is_null());
    EXPECT_NE(top1["loss"].get<double>(), traced["loss"].get<double>());
    EXPECT_EQ(top1_replayed["loss"].get<double>(), traced["loss"].get<double>());
}

TEST_F(RoutingTrace, ThePythonReaderCountsWhatTheEvaluationRouted) {
    const nlohmann::json evaluated = eval_json("run --trace reader.st");
    ASSERT_FALSE(evaluated.is_null());
    const CommandResult read = run_command(
        fmt::format("{} {}/tools/python/moelab_trace.py {}/reader.st --json", MOELAB_PYTHON,
                    MOELAB_SOURCE_DIR, shell_quote(corpus_->root().string())));
    ASSERT_EQ(read.exit_code, 0) << read.err;
    const nlohmann::json summary = nlohmann::json::parse(read.out);
    EXPECT_EQ(summary["tokens"].get<std::int64_t>(), 384);
    EXPECT_EQ(summary["experts"].get<std::int64_t>(), 4);
    ASSERT_EQ(summary["routing"].size(), 2u);  // two MoE layers, one router each
    for (const nlohmann::json& row : summary["routing"]) {
        std::int64_t assignments = 0;
        for (const auto& count : row["tokens_per_expert"]) assignments += count.get<std::int64_t>();
        EXPECT_EQ(assignments, 384 * 2) << row.dump();  // top-2, every slot used
        EXPECT_DOUBLE_EQ(row["experts_per_token"].get<double>(), 2.0);
        // The host's own count of the same evaluation: max / mean tokens per expert.
        const std::string layer = fmt::format("layer{}", row["layer"].get<int>());
        EXPECT_NEAR(row["imbalance"].get<double>(),
                    evaluated["moe"][layer]["banks"]["experts"]["load_imbalance"].get<double>(),
                    1e-6)
            << layer;
    }
}

TEST_F(RoutingTrace, RefusesATraceThatDoesNotFit) {
    ASSERT_EQ(eval("run --trace fit.st").exit_code, 0);
    struct Case {
        std::string arguments, message;
    };
    for (const Case& c : std::vector<Case>{
             {"run --replay fit.st --max-batches 2", "recorded on a longer evaluation"},
             {"run --replay fit.st --max-batches 4", "recorded on a shorter evaluation"},
             {"run --replay fit.st --split test", "recorded on other tokens"},
             // The same token stream in other batches: refused by what the trace records.
             {"run --replay fit.st --set eval.batch_size=4 --max-batches 6",
              "recorded with batch_size = 8, this evaluation has 4"},
             {"eight --replay fit.st", "recorded with 4 experts per layer; this model has 8"},
             {"run --replay recipe.toml", "recipe.toml"},
             {"run --replay missing.st", "missing.st"},
             {"run --replay fit.st --perturb disable_top=1", "fit.st: the trace fixes every"},
             {"run --replay fit.st --trace again.st", "give one"},
             {"run --trace no/such/dir/t.st", "does not exist"},
             {"run --trace corpus", "is a directory"}}) {
        const CommandResult result = eval(c.arguments);
        EXPECT_EQ(result.exit_code, 2) << c.arguments << "\n" << result.err;
        EXPECT_NE(result.err.find(c.message), std::string::npos) << c.arguments << "\n"
                                                                 << result.err;
    }
}

}  // namespace
}  // namespace moelab::tests

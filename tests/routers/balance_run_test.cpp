// The sequence length and micro-batch the host hands every router, seen through the balance losses
// of one training step (metrics.jsonl's aux_loss). Each loss equals the Switch loss exactly where
// its definition says it must, and differs from it where the host's plumbing is what makes it
// differ:
//   sequence-level, one sequence per batch   == Switch; four sequences per batch   != Switch
//   global-batch, one micro-batch per step   == Switch; two micro-batches per step != Switch
// (With the sequence length or the micro-batch index lost on the way, the second of each pair
// would equal the Switch loss too.)

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

// tests/recipes/tiny.toml (2 layers, 4 experts, top-2, sequences of 16 bytes), one step without
// the Switch loss, and each step logged.
std::string recipe() {
    return tiny_recipe_file() +
           " --set router.balance_coef=0.0 --set train.steps=1 --set train.warmup_steps=0";
}

class BalanceRun : public ::testing::Test {
  protected:
    // The first step's auxiliary loss with `loss` = 1 (the others 0).
    double aux_loss(const std::string& loss, int batch_size, int grad_accum) {
        const std::string out = fmt::format("{}-{}-{}", loss, batch_size, grad_accum);
        const CommandResult run = run_command(
            fmt::format("cd {} && {} run {} --out {} --set router.{}=1.0 --set train.batch_size={} "
                        "--set train.grad_accum={}",
                        shell_quote(corpus_.root().string()), shell_quote(MOELAB_BINARY), recipe(),
                        out, loss, batch_size, grad_accum));
        EXPECT_EQ(run.exit_code, 0) << run.err;
        std::ifstream in(corpus_.root() / out / "metrics.jsonl");
        for (std::string line; std::getline(in, line);) {
            const nlohmann::json record = nlohmann::json::parse(line);
            if (record.value("type", "") == "train") return record["aux_loss"].get<double>();
        }
        ADD_FAILURE() << "no train record in " << out;
        return 0;
    }

    TestCorpus corpus_{2000};
};

TEST_F(BalanceRun, SequenceLossSeesEachSequenceOfTheBatch) {
    EXPECT_NEAR(aux_loss("sequence_balance_coef", 1, 1), aux_loss("balance_coef", 1, 1), 1e-6);
    const double switch_loss = aux_loss("balance_coef", 4, 1);
    const double sequence_loss = aux_loss("sequence_balance_coef", 4, 1);
    EXPECT_GT(std::abs(sequence_loss - switch_loss), 1e-4)
        << sequence_loss << " vs " << switch_loss;
}

TEST_F(BalanceRun, GlobalLossAccumulatesTheStepsMicroBatches) {
    EXPECT_NEAR(aux_loss("global_balance_coef", 4, 1), aux_loss("balance_coef", 4, 1), 1e-6);
    const double switch_loss = aux_loss("balance_coef", 2, 2);
    const double global_loss = aux_loss("global_balance_coef", 2, 2);
    EXPECT_GT(std::abs(global_loss - switch_loss), 1e-4) << global_loss << " vs " << switch_loss;
}

}  // namespace
}  // namespace moelab::tests

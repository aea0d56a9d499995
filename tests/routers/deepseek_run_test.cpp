// Auxiliary-loss-free balancing end to end: the same tiny run with the deepseek router, once
// without any balancing and once with the bias, neither with a balance loss. The bias must make the
// expert load clearly more even (load imbalance = max / mean tokens per expert, from
// metrics.jsonl).

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

constexpr char kRecipe[] = R"(seed = 11
[data]
corpus = "corpus"
seq_len = 32
cache_dir = "cache"
[tokenizer]
plugin = "bytes"
[model]
layers = 2
d_model = 32
heads = 4
d_ff = 64
ffn = "moe"
[attention]
plugin = "rope"
[moe]
experts = 8
d_ff_expert = 16
[router]
plugin = "deepseek"
k = 2
balance_coef = 0.0
[train]
steps = 400
batch_size = 8
lr_peak = 3e-3
lr_min = 3e-4
warmup_steps = 5
log_every = 5
eval_every = 0
[eval]
batch_size = 8
max_batches = 2
)";

// Mean load imbalance over the MoE layers and the train records from `first_step` on.
double mean_load_imbalance(const std::filesystem::path& metrics, std::int64_t first_step) {
    std::ifstream in(metrics);
    double sum = 0;
    int count = 0;
    for (std::string line; std::getline(in, line);) {
        const nlohmann::json record = nlohmann::json::parse(line);
        if (record["type"] != "train" || record["step"].get<std::int64_t>() < first_step) continue;
        for (const auto& [layer, stats] : record["moe"].items()) {
            sum += stats["banks"]["experts"]["load_imbalance"].get<double>();
            ++count;
        }
    }
    return count > 0 ? sum / count : 0.0;
}

TEST(DeepSeekRun, TheBiasEvensOutTheExpertLoad) {
    const TestCorpus corpus(4000);
    std::ofstream(corpus.root() / "recipe.toml") << kRecipe;
    double imbalance[2] = {0, 0};
    // DeepSeek-V3's rate; it needs some hundred steps to move a bias by the spread of affinities.
    const double rates[2] = {0.0, 0.001};
    for (int i = 0; i < 2; ++i) {
        const std::string out = fmt::format("rate-{}", i);
        const CommandResult run = run_command(fmt::format(
            "cd {} && {} run recipe.toml --set router.bias_rate={} --out {}",
            shell_quote(corpus.root().string()), shell_quote(MOELAB_BINARY), rates[i], out));
        ASSERT_EQ(run.exit_code, 0) << run.err;
        imbalance[i] = mean_load_imbalance(corpus.root() / out / "metrics.jsonl", 200);
    }
    std::cout << fmt::format(
        "[ figures  ] load imbalance (max / mean), steps 200-400: no balancing {:.3f}, bias rate "
        "0.001 {:.3f}\n",
        imbalance[0], imbalance[1]);
    // Perfect balance is 1: the bias must remove most of the excess.
    EXPECT_LT(imbalance[1] - 1, 0.5 * (imbalance[0] - 1));
}

}  // namespace
}  // namespace moelab::tests

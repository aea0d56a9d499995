// Sliding-window perplexity against the plain perplexity and a naive loop with one forward per
// target; the passkey test with an oracle that reads the key and with a model that guesses.

#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>
#include <regex>

#include <torch/autograd.h>
#include "core/conformance/conformance_report.h"
#include "core/eval/evaluator.h"
#include "core/eval/long_context.h"
#include "core/plugin/instantiate.h"
#include "model_fixture.h"
#include "moelab/sdk/init.h"

namespace moelab::tests {
namespace {

TEST(SlidingWindows, ScoreEveryTargetOnceAsWorkedOut) {
    // 10 tokens, windows of 4, starts 2 apart: targets 1-3, 4-5, 6-7, 8-9.
    const auto windows = core::sliding_windows(10, 4, 2);
    ASSERT_EQ(windows.size(), 4u);
    const std::vector<std::array<std::int64_t, 3>> expected{
        {0, 4, 1}, {2, 6, 4}, {4, 8, 6}, {6, 10, 8}};
    for (std::size_t i = 0; i < windows.size(); ++i) {
        EXPECT_EQ(windows[i].begin, expected[i][0]) << i;
        EXPECT_EQ(windows[i].end, expected[i][1]) << i;
        EXPECT_EQ(windows[i].first_scored, expected[i][2]) << i;
    }
    // The longest stride, context - 1: windows overlap by one token, the predecessor of their
    // first target. 10 tokens, windows of 4: targets 1-3, 4-6, 7-9.
    const auto widest = core::sliding_windows(10, 4, 3);
    ASSERT_EQ(widest.size(), 3u);
    EXPECT_EQ(widest[1].begin, 3);
    EXPECT_EQ(widest[1].first_scored, 4);
    EXPECT_EQ(widest[2].begin, 6);
    EXPECT_EQ(widest[2].first_scored, 7);
    // A stride of the whole context would skip the first token of every window.
    EXPECT_THROW(core::sliding_windows(10, 4, 4), std::invalid_argument);
    // One window covers a short document.
    const auto one = core::sliding_windows(3, 8, 2);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].end, 3);
    EXPECT_THROW(core::sliding_windows(10, 4, 5), std::invalid_argument);
    EXPECT_THROW(core::sliding_windows(10, 1, 1), std::invalid_argument);
}

at::Tensor document(std::int64_t length, std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed);
    return at::randint(kTinyVocab, {length}, generator, at::kLong);
}

TEST(SlidingWindowPerplexity, OneWindowIsThePlainPerplexity) {
    auto tiny = tiny_model();
    torch::NoGradGuard no_grad;
    const at::Tensor doc = document(30, 1);
    const at::Tensor windows = doc.view({1, -1});
    const double plain =
        core::next_token_loss(tiny->model->forward(windows.narrow(1, 0, 29), {}).logits,
                              core::TokenBatch{windows, {}}, /*sum=*/false)
            .item<double>();
    const core::ContextPerplexity result =
        core::sliding_window_perplexity(*tiny->model, {doc}, 64, 16, {});
    EXPECT_EQ(result.tokens, 29);
    EXPECT_NEAR(result.loss(), plain, 1e-6);
}

TEST(SlidingWindowPerplexity, StrideOneEqualsOneForwardPerTargetWithItsContext) {
    auto tiny = tiny_model();
    torch::NoGradGuard no_grad;
    constexpr std::int64_t kContext = 6;
    const std::vector<at::Tensor> docs{document(17, 2), document(9, 3)};
    // Naive: target t of a document is predicted from the min(t, context - 1) tokens before it.
    double nll = 0;
    std::int64_t targets = 0;
    for (const at::Tensor& doc : docs) {
        for (std::int64_t t = 1; t < doc.size(0); ++t) {
            const std::int64_t begin = std::max<std::int64_t>(0, t - (kContext - 1));
            const at::Tensor context = doc.narrow(0, begin, t - begin).view({1, -1});
            const at::Tensor logits = tiny->model->forward(context, {}).logits[0][t - begin - 1];
            nll -= logits.log_softmax(-1)[doc[t].item<std::int64_t>()].item<double>();
            ++targets;
        }
    }
    core::LongContextSetup setup;
    setup.batch_size = 3;
    const core::ContextPerplexity result =
        core::sliding_window_perplexity(*tiny->model, docs, kContext, 1, setup);
    EXPECT_EQ(result.tokens, targets);
    EXPECT_NEAR(result.loss(), nll / static_cast<double>(targets), 1e-5);
}

TEST(LongDocuments, KeepsThoseLongEnoughUpToTheBudget) {
    const std::vector<std::int32_t> ids{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    // Documents of 3, 5 and 4 tokens.
    const auto all = core::long_documents(ids, {3, 8, 12}, 4, 0);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0][0].item<std::int64_t>(), 3);
    EXPECT_EQ(all[0].size(0), 5);
    EXPECT_EQ(all[1].size(0), 4);
    const auto budget = core::long_documents(ids, {3, 8, 12}, 4, 5);
    EXPECT_EQ(budget.size(), 1u);
}

std::shared_ptr<sdk::Tokenizer> bytes_tokenizer(core::PluginRegistry& registry) {
    const core::RegisteredTokenizer* bytes = registry.find_tokenizer("bytes");
    if (bytes == nullptr) throw std::runtime_error("no bytes tokenizer");
    return core::train_tokenizer(*bytes, {}, core::default_params(bytes->component.params));
}

std::vector<std::int32_t> filler_text(const sdk::Tokenizer& tokenizer) {
    std::string text;
    for (int i = 0; i < 200; ++i) text += "The grass is green. The sky is blue. Here we go again. ";
    std::vector<std::int32_t> ids;
    tokenizer.encode(text, ids);
    return ids;
}

TEST(Passkey, AnOracleFindsEveryKeyAndAGuesserNone) {
    core::PluginRegistry registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const auto tokenizer = bytes_tokenizer(registry);
    const std::vector<std::int32_t> filler = filler_text(*tokenizer);
    core::PasskeyOptions options;
    options.lengths = {300, 600};
    options.trials = 4;
    std::int64_t prompts_seen = 0;
    const std::regex needle("The pass key is ([0-9]+)\\. Remember it\\.");
    const core::Completion oracle = [&](const std::vector<std::vector<std::int32_t>>& prompts,
                                        std::int64_t count) {
        std::vector<std::vector<std::int32_t>> out;
        for (const auto& prompt : prompts) {
            const std::string text = tokenizer->decode(prompt);
            std::smatch match;
            EXPECT_TRUE(std::regex_search(text, match, needle));
            EXPECT_EQ(
                prompt.size(),
                options.lengths[static_cast<std::size_t>(prompts_seen / (options.trials * 5))]);
            std::vector<std::int32_t> answer;
            tokenizer->encode(" " + match[1].str() + ".", answer);
            answer.resize(static_cast<std::size_t>(count), 'x');
            out.push_back(answer);
            ++prompts_seen;
        }
        return out;
    };
    const core::PasskeyResult found = core::passkey_test(*tokenizer, filler, options, oracle);
    ASSERT_EQ(found.cells.size(), 2u * 5u);
    for (const core::PasskeyCell& cell : found.cells) EXPECT_EQ(cell.accuracy(), 1.0);
    EXPECT_EQ(found.to_json()["accuracy"], 1.0);

    std::mt19937 random(7);
    const core::Completion guesser = [&](const std::vector<std::vector<std::int32_t>>& prompts,
                                         std::int64_t count) {
        std::vector<std::vector<std::int32_t>> out;
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            std::vector<std::int32_t> digits{' '};
            while (static_cast<std::int64_t>(digits.size()) < count) {
                digits.push_back('0' + static_cast<std::int32_t>(random() % 10));
            }
            out.push_back(digits);
        }
        return out;
    };
    const core::PasskeyResult guessed = core::passkey_test(*tokenizer, filler, options, guesser);
    EXPECT_EQ(guessed.to_json()["accuracy"], 0.0);
}

TEST(Passkey, TheKeyAtDepthZeroAndOneSitsAtTheEdgesOfTheFiller) {
    core::PluginRegistry registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const auto tokenizer = bytes_tokenizer(registry);
    const std::vector<std::int32_t> filler = filler_text(*tokenizer);
    core::PasskeyOptions options;
    options.lengths = {400};
    options.depths = {0.0, 1.0};
    options.trials = 1;
    std::vector<std::string> texts;
    core::passkey_test(*tokenizer, filler, options,
                       [&](const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t) {
                           for (const auto& p : prompts) texts.push_back(tokenizer->decode(p));
                           return std::vector<std::vector<std::int32_t>>(prompts.size());
                       });
    ASSERT_EQ(texts.size(), 2u);
    EXPECT_NE(texts[0].find("information there.\n The pass key is"), std::string::npos) << texts[0];
    EXPECT_NE(texts[1].find("is the pass key. \nWhat is the pass key? The pass key is"),
              std::string::npos)
        << texts[1];
    // Too short for the prompt's fixed parts: cells that say why, no trials, no number.
    options.lengths = {20};
    const core::PasskeyResult short_prompt = core::passkey_test(*tokenizer, filler, options, {});
    ASSERT_EQ(short_prompt.cells.size(), 2u);
    EXPECT_EQ(short_prompt.cells[0].trials, 0);
    EXPECT_NE(short_prompt.cells[0].not_measured.find("a prompt of 20 tokens cannot hold"),
              std::string::npos);
    EXPECT_TRUE(short_prompt.to_json()["accuracy"].is_null());
    EXPECT_TRUE(short_prompt.to_json()["cells"][0]["accuracy"].is_null());
    // A filler shorter than a prompt needs is an error.
    options.lengths = {400};
    EXPECT_THROW(core::passkey_test(*tokenizer, std::vector<std::int32_t>(50, 'a'), options, {}),
                 std::invalid_argument);
}

}  // namespace
}  // namespace moelab::tests

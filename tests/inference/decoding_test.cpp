// Cached decoding against recomputing the whole sequence: one sequence, a batch of prompts of
// different lengths (left-padded), a cache filled to its capacity and one token past it; and
// greedy generation with and without the cache.

#include <gtest/gtest.h>

#include <algorithm>

#include <fmt/format.h>
#include <torch/autograd.h>

#include "core/config/diagnostics.h"
#include "core/inference/generation.h"
#include "core/model/decoding_cache.h"
#include "core/plugin/required_feature.h"
#include "model_fixture.h"
#include "moelab/sdk/capability.h"
#include "moelab/sdk/init.h"

namespace moelab::tests {
namespace {

// fp32 on the CPU: the cached path computes the same sums in another grouping (attention over a
// prefix view instead of a masked full matrix), so equality holds to rounding.
constexpr double kTolerance = 2e-5;

at::Tensor random_tokens(std::int64_t batch, std::int64_t length, std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed);
    return at::randint(kTinyVocab, {batch, length}, generator, at::kLong);
}

double max_difference(const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<double>();
}

TEST(CachedDecoding, EqualsRecomputationTokenByTokenUntilTheCacheIsFull) {
    for (const char* recipe : {"tiny.toml", "tiny-dense.toml"}) {
        SCOPED_TRACE(recipe);
        auto tiny = tiny_model({}, recipe);
        torch::NoGradGuard no_grad;
        constexpr std::int64_t kLength = 20, kPrompt = 7;
        const at::Tensor tokens = random_tokens(2, kLength, 1);
        const at::Tensor full = tiny->model->forward(tokens, {}).logits;

        auto cache = tiny->model->make_decoding_cache(2, kLength);
        core::ForwardOptions options;
        options.cache = cache.get();
        std::vector<at::Tensor> pieces{
            tiny->model->forward(tokens.narrow(1, 0, kPrompt), options).logits};
        for (std::int64_t t = kPrompt; t < kLength; ++t) {
            options.positions = at::full({2, 1}, t, at::kLong);
            pieces.push_back(tiny->model->forward(tokens.narrow(1, t, 1), options).logits);
        }
        EXPECT_EQ(cache->length(), kLength);
        EXPECT_EQ(cache->free(), 0);
        EXPECT_LT(max_difference(at::cat(pieces, 1), full), kTolerance);

        // Past the capacity: a clear error from the host, before any plugin sees the token.
        options.positions = at::full({2, 1}, kLength, at::kLong);
        try {
            tiny->model->forward(tokens.narrow(1, 0, 1), options);
            FAIL() << "a full cache accepted a token";
        } catch (const core::DecodingError& error) {
            EXPECT_NE(std::string(error.what())
                          .find("cannot add 1 token to a decoding cache of "
                                "20 tokens that holds 20 already"),
                      std::string::npos)
                << error.what();
        }
        EXPECT_EQ(cache->length(), kLength);
    }
}

TEST(CachedDecoding, PromptsOfDifferentLengthsDecodeLikeEachAlone) {
    auto tiny = tiny_model();
    torch::NoGradGuard no_grad;
    // Row 0: 4 prompt tokens, row 1: 9; then 6 tokens each, teacher-forced.
    constexpr std::int64_t kShort = 4, kLong = 9, kNew = 6;
    const at::Tensor short_row = random_tokens(1, kShort + kNew, 2);
    const at::Tensor long_row = random_tokens(1, kLong + kNew, 3);
    const at::Tensor alone_short = tiny->model->forward(short_row, {}).logits;
    const at::Tensor alone_long = tiny->model->forward(long_row, {}).logits;

    at::Tensor prompt = at::zeros({2, kLong}, at::kLong);
    at::Tensor positions = at::full({2, kLong}, -1, at::kLong);
    prompt[0].narrow(0, kLong - kShort, kShort).copy_(short_row[0].narrow(0, 0, kShort));
    positions[0].narrow(0, kLong - kShort, kShort).copy_(at::arange(kShort));
    prompt[1].copy_(long_row[0].narrow(0, 0, kLong));
    positions[1].copy_(at::arange(kLong));

    auto cache = tiny->model->make_decoding_cache(2, kLong + kNew);
    core::ForwardOptions options;
    options.cache = cache.get();
    options.positions = positions;
    const at::Tensor first = tiny->model->forward(prompt, options).logits;
    EXPECT_LT(max_difference(first[0].narrow(0, kLong - kShort, kShort),
                             alone_short[0].narrow(0, 0, kShort)),
              kTolerance);
    EXPECT_LT(max_difference(first[1], alone_long[0].narrow(0, 0, kLong)), kTolerance);
    for (std::int64_t t = 0; t < kNew; ++t) {
        const at::Tensor token =
            at::stack({short_row[0][kShort + t], long_row[0][kLong + t]}).view({2, 1});
        options.positions = at::tensor({kShort + t, kLong + t}, at::kLong).view({2, 1});
        const at::Tensor logits = tiny->model->forward(token, options).logits;
        EXPECT_LT(max_difference(logits[0][0], alone_short[0][kShort + t]), kTolerance) << t;
        EXPECT_LT(max_difference(logits[1][0], alone_long[0][kLong + t]), kTolerance) << t;
    }
}

TEST(CachedDecoding, RefusesACacheMadeForAnotherBatch) {
    auto tiny = tiny_model();
    torch::NoGradGuard no_grad;
    auto cache = tiny->model->make_decoding_cache(3, 8);
    core::ForwardOptions options;
    options.cache = cache.get();
    EXPECT_THROW(tiny->model->forward(random_tokens(2, 4, 4), options), core::DecodingError);
}

TEST(Generation, GreedyWithTheCacheGivesTheTokensOfRecomputation) {
    auto tiny = tiny_model();
    const std::vector<std::vector<std::int32_t>> prompts{{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10}};
    core::GenerationOptions options;
    options.max_new = 12;
    options.sampling.temperature = 0;
    const core::GenerationResult cached = core::generate(*tiny->model, prompts, options);
    options.use_cache = false;
    const core::GenerationResult recomputed = core::generate(*tiny->model, prompts, options);
    ASSERT_EQ(cached.tokens.size(), 2u);
    EXPECT_EQ(cached.tokens[0].size(), 12u);
    EXPECT_EQ(cached.tokens, recomputed.tokens);
    EXPECT_EQ(cached.prompt_tokens, 10);
    EXPECT_EQ(cached.decode_steps, 11);
    EXPECT_EQ(cached.decoded_tokens, 22);
    EXPECT_EQ(cached.cache_capacity, 7 + 12);
    // The rope plugin caches keys and values of kv_heads x head_dim floats per layer, and the
    // position of every slot: 2 layers x (2 x 4 x 8 x 4 bytes + 8 bytes).
    EXPECT_EQ(cached.cache_bytes_per_token, 2 * (2 * 4 * 8 * 4 + 8));

    // A row computed alone: the batch does not change what a prompt produces.
    options.use_cache = true;
    const core::GenerationResult alone = core::generate(*tiny->model, {prompts[0]}, options);
    EXPECT_EQ(alone.tokens[0], cached.tokens[0]);
}

TEST(Generation, StopsARowAtTheEndIdAndRejectsBadInput) {
    auto tiny = tiny_model();
    core::GenerationOptions options;
    options.max_new = 6;
    options.sampling.temperature = 0;
    const core::GenerationResult free_run = core::generate(*tiny->model, {{1, 2}}, options);
    ASSERT_EQ(free_run.tokens[0].size(), 6u);
    // Make the third generated token the end id: the row ends before it.
    options.end_id = free_run.tokens[0][2];
    const core::GenerationResult stopped = core::generate(*tiny->model, {{1, 2}}, options);
    const auto first_end =
        std::find(free_run.tokens[0].begin(), free_run.tokens[0].end(), options.end_id);
    EXPECT_EQ(stopped.tokens[0], std::vector<std::int32_t>(free_run.tokens[0].begin(), first_end));
    EXPECT_THROW(core::generate(*tiny->model, {{}}, options), std::invalid_argument);
    options.max_new = 0;
    EXPECT_THROW(core::generate(*tiny->model, {{1}}, options), std::invalid_argument);
}

TEST(CachedDecoding, AnAttentionComponentThatDoesNotListKvCacheIsRefused) {
    auto tiny = tiny_model();
    // rope lists kv_cache; the same component without it stands for one that cannot decode.
    EXPECT_NO_THROW(core::require_feature(tiny->resolved, core::ComponentKind::kAttention,
                                          sdk::feature::kKvCache, "decoding"));
    core::RegisteredAttention without = *tiny->resolved.attention;
    without.component.features.clear();
    core::ResolvedRecipe resolved = tiny->resolved;
    resolved.attention = &without;
    try {
        core::require_feature(resolved, core::ComponentKind::kAttention, sdk::feature::kKvCache,
                              "moelab generate decodes through its caches");
        FAIL() << "a component without kv_cache was accepted";
    } catch (const core::ConfigError& error) {
        const core::ConfigIssue& issue = error.issues().at(0);
        EXPECT_EQ(issue.key, "attention.plugin");
        EXPECT_NE(issue.message.find("attention 'rope' does not list the feature kv_cache"),
                  std::string::npos)
            << issue.message;
        EXPECT_NE(issue.message.find("moelab generate decodes through its caches"),
                  std::string::npos);
        EXPECT_NE(issue.location.file.find("tiny.toml"), std::string::npos);
    }
}

}  // namespace
}  // namespace moelab::tests

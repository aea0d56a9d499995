// Note [Model FLOPs] on the tiny models of tests/recipes, counted by hand from their recipes:
// d_model 32, 4 heads of 8 (no GQA), 2 layers, the fixture's vocabulary of 40, tied embeddings,
// sequences of 16 tokens.
//   attention per layer: projections q, k, v, o: 2 * 32 * (2 * 32 + 2 * 32) = 8192
//                        q.k and p.v for context c: 4 * 32 * c, mean over c = 1..16: 128 * 8.5
//                        = 1088
//   dense SwiGLU per layer (d_ff 64): 2 * 3 * 32 * 64 = 12288
//   MoE per layer (4 experts of 16, top-2): router 2 * 4 * 32 = 256, experts 2 of 4 used:
//                        2 * (3 * 32 * 16) * 2 = 6144
//   LM head (tied to the embedding): 2 * 40 * 32 = 2560
// dense: 2 * (8192 + 1088 + 12288) + 2560 = 45696; MoE: 2 * (8192 + 1088 + 256 + 6144) + 2560 =
// 33920.

#include <gtest/gtest.h>

#include "inference/model_fixture.h"

namespace moelab::tests {
namespace {

TEST(ModelFlops, DenseTinyModelMatchesTheHandCount) {
    const auto tiny = tiny_model({}, "tiny-dense.toml");
    const std::optional<double> flops = tiny->model->forward_flops_per_token({}, 16);
    ASSERT_TRUE(flops.has_value());
    EXPECT_DOUBLE_EQ(*flops, 45696.0);
    // One token of context: attention q.k and p.v over c = 1 only, 128 per layer.
    EXPECT_DOUBLE_EQ(*tiny->model->forward_flops_per_token({}, 1), 45696.0 - 2 * (1088 - 128));
}

TEST(ModelFlops, MoeTinyModelCountsTheExpertsATokenUses) {
    const auto tiny = tiny_model();
    // The routing statistics of one forward: top-2 of 4 fills both slots of every token, so each
    // bank's measured active fraction is exactly 1/2.
    core::RoutingStats stats;
    core::ForwardOptions options;
    options.stats = &stats;
    at::manual_seed(1);
    tiny->model->forward(at::randint(kTinyVocab, {2, 16}, at::kLong), options);
    const std::optional<double> flops = tiny->model->forward_flops_per_token(stats, 16);
    ASSERT_TRUE(flops.has_value());
    EXPECT_DOUBLE_EQ(*flops, 33920.0);
}

}  // namespace
}  // namespace moelab::tests

// The TopP and Hash baselines (methods.md §2.3): selections on hand-built inputs.

#include <gtest/gtest.h>

#include <torch/autograd.h>

#include "router_fixture.h"

namespace moelab::tests {
namespace {

// Routes rows of given probabilities through a real top-p layer: with d_model = experts and the
// identity as router weight, the logits are the normalised input. Softmax ignores a constant
// added to a row, so each row is log p shifted by the c that gives it an RMS of exactly 1, which
// RMSNorm then leaves unchanged (up to its epsilon, 1e-5 on the mean square).
sdk::RoutingDecision route_probabilities(BuiltLayer& built, const at::Tensor& probs) {
    {
        torch::NoGradGuard no_grad;
        built.parameter("block.router.weight").copy_(at::eye(probs.size(1)));
    }
    const at::Tensor v = probs.to(at::kDouble).log();
    const at::Tensor mean = v.mean(-1, true);
    const at::Tensor variance = (v - mean).square().mean(-1, true);
    // mean((v + c)^2) = 1  <=>  c = -mean + sqrt(1 - variance); needs variance < 1.
    EXPECT_TRUE((variance < 1).all().item<bool>());
    const at::Tensor hidden = (v - mean + (1 - variance).sqrt()).to(at::kFloat);
    return built.forward(hidden, at::zeros({probs.size(0)}, at::kLong), false).routing[0];
}

TEST(TopP, KeepsTheShortestPrefixAboveP) {
    BuiltLayer built = build_layer("topp", {{"p", 0.4}}, LayerSpec{.d_model = 4, .experts = 4});
    const at::Tensor probs =
        at::tensor({0.50, 0.30, 0.15, 0.05,   // 0.50 > 0.4 at once: {0}
                    0.25, 0.30, 0.20, 0.25,   // 0.30 + 0.25 crosses: {1, 0 or 3}
                    0.05, 0.15, 0.35, 0.45,   // {3}
                    0.10, 0.20, 0.32, 0.38})  // 0.38 + 0.32 crosses: {3, 2}
            .view({4, 4});
    const sdk::RoutingDecision d = route_probabilities(built, probs);
    auto experts_of = [&](std::int64_t t) {
        std::vector<std::int64_t> out;
        for (std::int64_t s = 0; s < d.expert_indices.size(1); ++s) {
            const auto e = d.expert_indices[t][s].item<std::int64_t>();
            if (e >= 0) out.push_back(e);
        }
        return out;
    };
    EXPECT_EQ(experts_of(0), (std::vector<std::int64_t>{0}));
    EXPECT_EQ(experts_of(1).size(), 2u);
    EXPECT_EQ(experts_of(1)[0], 1);
    EXPECT_EQ(experts_of(2), (std::vector<std::int64_t>{3}));
    EXPECT_EQ(experts_of(3), (std::vector<std::int64_t>{3, 2}));
    // Weights are the raw probabilities, not renormalised; empty slots weigh 0.
    EXPECT_NEAR(d.combine_weights[0][0].item<double>(), 0.50, 1e-4);
    EXPECT_EQ(d.combine_weights[0][1].item<double>(), 0.0);
    EXPECT_NEAR(d.combine_weights[1][0].item<double>(), 0.30, 1e-4);
    EXPECT_NEAR(d.combine_weights[1][1].item<double>(), 0.25, 1e-4);
    EXPECT_NEAR(d.combine_weights[3][0].item<double>(), 0.38, 1e-4);
    EXPECT_NEAR(d.combine_weights[3][1].item<double>(), 0.32, 1e-4);
}

TEST(Hash, EveryOccurrenceOfATokenGoesToItsFixedExperts) {
    BuiltLayer built = build_layer("hash", {{"k", std::int64_t{2}}});
    const at::Tensor table = built.buffer("block.router.table");
    ASSERT_EQ(table.sizes(), (at::IntArrayRef{16, 2}));
    EXPECT_TRUE((table.select(1, 0) != table.select(1, 1)).all().item<bool>());
    at::manual_seed(9);
    const at::Tensor ids = at::randint(16, {200}, at::kLong);
    const sdk::BlockOutput a = built.forward(at::randn({200, 8}), ids, true);
    const sdk::BlockOutput b = built.forward(at::randn({200, 8}), ids, false);
    // The token's table row, listed in ascending expert order.
    const at::Tensor expected = std::get<0>(table.index_select(0, ids).sort(1));
    EXPECT_TRUE(at::equal(a.routing[0].expert_indices, expected));
    EXPECT_TRUE(at::equal(b.routing[0].expert_indices, expected));
    EXPECT_TRUE(at::allclose(a.routing[0].combine_weights, at::full({200, 2}, 0.5)));
    // Nothing in the router is learned.
    for (const auto& item : built.layer->named_parameters()) {
        EXPECT_TRUE(item.key().find("router") == std::string::npos) << item.key();
    }
}

TEST(Hash, OneRandomTableForAllLayersUnlessPerLayer) {
    auto table = [](bool per_layer, std::uint64_t layer_seed) {
        return build_layer("hash", {{"per_layer", per_layer}}, LayerSpec{.seed = layer_seed})
            .buffer("block.router.table");
    };
    EXPECT_TRUE(at::equal(table(false, 1), table(false, 2)));
    EXPECT_FALSE(at::equal(table(true, 1), table(true, 2)));
}

TEST(Hash, BalancedAssignmentGivesFrequentIdsTheLeastLoadedExperts) {
    // Ids by count 10, 9, 1, 1, 1, 1 over 2 experts, greedy with ties to the lower expert:
    // 10 -> e0 (10|0), 9 -> e1 (10|9), 1 -> e1 (10|10), 1 -> e0 (11|10), 1 -> e1, 1 -> e0.
    LayerSpec spec{.experts = 2, .vocab = 6};
    spec.token_counts = at::tensor({10, 9, 1, 1, 1, 1}, at::kLong);
    BuiltLayer built = build_layer("hash", {{"assignment", std::string("balanced")}}, spec);
    EXPECT_TRUE(at::equal(built.buffer("block.router.table").view({-1}),
                          at::tensor({0, 1, 1, 0, 1, 0}, at::kLong)));
}

}  // namespace
}  // namespace moelab::tests

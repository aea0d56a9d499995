// The expert_choice router against a written-out loop: softmax affinities over the experts, each
// expert takes the ceil(c * tokens / experts) tokens with the highest affinity, weights are those
// affinities, and a token no expert took passes through with no expert output.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

// (tokens, experts) softmax affinities of the layer's router on `h`, written out per element.
std::vector<std::vector<double>> affinities(const BuiltLayer& built, const at::Tensor& h) {
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight")).to(at::kDouble);
    const at::Tensor w = built.parameter("block.router.weight").to(at::kDouble);
    std::vector<std::vector<double>> p(static_cast<std::size_t>(x.size(0)));
    for (std::int64_t t = 0; t < x.size(0); ++t) {
        std::vector<double> logits;
        for (std::int64_t e = 0; e < w.size(0); ++e) {
            double logit = 0;
            for (std::int64_t i = 0; i < x.size(1); ++i) {
                logit += x[t][i].item<double>() * w[e][i].item<double>();
            }
            logits.push_back(logit);
        }
        const double top = *std::max_element(logits.begin(), logits.end());
        double sum = 0;
        for (double l : logits) sum += std::exp(l - top);
        for (double l : logits) p[t].push_back(std::exp(l - top) / sum);
    }
    return p;
}

TEST(ExpertChoice, EachExpertTakesItsTopTokensWeightedByTheirAffinity) {
    // 4 experts, 20 tokens, c = 1.5: each expert takes ceil(1.5 * 20 / 4) = 8 tokens.
    BuiltLayer built = build_layer("expert_choice", {{"capacity_factor", 1.5}});
    at::manual_seed(9);
    const at::Tensor h = at::randn({20, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({20}, at::kLong), true);
    const sdk::RoutingDecision& d = out.routing[0];
    const auto p = affinities(built, h);
    ASSERT_EQ(d.expert_indices.sizes(), (at::IntArrayRef{20, 4}));
    std::vector<int> experts_of_token(20, 0);
    for (std::int64_t e = 0; e < 4; ++e) {
        std::vector<int> order(20);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return p[a][e] > p[b][e]; });
        std::vector<bool> taken(20, false);
        for (int i = 0; i < 8; ++i) taken[order[i]] = true;
        for (std::int64_t t = 0; t < 20; ++t) {
            // Slot e is expert e where it took the token, else empty with weight 0.
            EXPECT_EQ(d.expert_indices[t][e].item<std::int64_t>(), taken[t] ? e : -1) << t << e;
            EXPECT_NEAR(d.combine_weights[t][e].item<double>(), taken[t] ? p[t][e] : 0.0, 1e-6);
            experts_of_token[t] += taken[t] ? 1 : 0;
        }
    }
    int unrouted = 0;
    for (int n : experts_of_token) unrouted += n == 0 ? 1 : 0;
    // The host's block moves a decision's stats into the block's.
    for (const auto& [name, value] : out.stats) {
        if (name == "experts_per_token") EXPECT_NEAR(value.item<double>(), 32.0 / 20, 1e-6);
        if (name == "unrouted_tokens") EXPECT_NEAR(value.item<double>(), unrouted / 20.0, 1e-6);
    }
    EXPECT_EQ(out.stats.size(), 2u);
}

// Worked by hand: ceil(c * tokens / experts), at most every token.
TEST(ExpertChoice, CapacityIsTheCeilingOfTheFactorsShare) {
    BuiltLayer two = build_layer("expert_choice", {{"capacity_factor", 2.0}});
    BuiltLayer many = build_layer("expert_choice", {{"capacity_factor", 8.0}});
    at::manual_seed(2);
    for (const auto& [tokens, expect_two, expect_many] :
         std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{
             {8, 4, 8}, {9, 5, 9}, {3, 2, 3}, {1, 1, 1}}) {
        const at::Tensor h = at::randn({tokens, 8});
        const at::Tensor ids = at::zeros({tokens}, at::kLong);
        const sdk::RoutingDecision a = two.forward(h, ids, false).routing[0];
        const sdk::RoutingDecision b = many.forward(h, ids, false).routing[0];
        for (std::int64_t e = 0; e < 4; ++e) {
            EXPECT_EQ(a.expert_indices.select(1, e).ge(0).sum().item<std::int64_t>(), expect_two)
                << tokens << " tokens, expert " << e;
            EXPECT_EQ(b.expert_indices.select(1, e).ge(0).sum().item<std::int64_t>(), expect_many);
        }
    }
}

// The whole layer: the output of a token is the residual plus its takers' expert outputs times
// their affinities; an untaken token's output is its input.
TEST(ExpertChoice, UntakenTokensKeepTheirResidualStream) {
    BuiltLayer built = build_layer("expert_choice", {{"capacity_factor", 0.5}});
    at::manual_seed(5);
    const at::Tensor h = at::randn({16, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({16}, at::kLong), false);
    const at::Tensor taken = out.routing[0].expert_indices.ge(0).any(-1);
    EXPECT_EQ(taken.sum().item<std::int64_t>() > 0, true);
    for (std::int64_t t = 0; t < 16; ++t) {
        if (taken[t].item<bool>()) continue;
        EXPECT_TRUE(at::equal(out.hidden[t], h[t])) << t;
    }
}

}  // namespace
}  // namespace moelab::tests

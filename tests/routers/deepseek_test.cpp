// The deepseek router (DeepSeek-V3 routing) against written-out loops: sigmoid affinities, top-k
// weights divided by their sum and scaled, group-limited selection, and the auxiliary-loss-free
// bias: its update rule over several steps with gradient accumulation, and that it steers the
// selection but never the combine weights.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include <torch/autograd.h>

#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

// (tokens, experts) sigmoid affinities of the layer's router on `h`, written out per element.
std::vector<std::vector<double>> affinities(const BuiltLayer& built, const at::Tensor& h) {
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight")).to(at::kDouble);
    const at::Tensor w = built.parameter("block.router.weight").to(at::kDouble);
    std::vector<std::vector<double>> s(static_cast<std::size_t>(x.size(0)));
    for (std::int64_t t = 0; t < x.size(0); ++t) {
        for (std::int64_t e = 0; e < w.size(0); ++e) {
            double logit = 0;
            for (std::int64_t i = 0; i < x.size(1); ++i) {
                logit += x[t][i].item<double>() * w[e][i].item<double>();
            }
            s[t].push_back(1.0 / (1.0 + std::exp(-logit)));
        }
    }
    return s;
}

// The `k` entries of `keys` (restricted to `allowed`) with the largest values, largest first.
std::vector<int> top(const std::vector<double>& keys, int k, const std::vector<bool>& allowed) {
    std::vector<int> order;
    for (int e = 0; e < static_cast<int>(keys.size()); ++e) {
        if (allowed[e]) order.push_back(e);
    }
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return keys[a] > keys[b]; });
    order.resize(static_cast<std::size_t>(k));
    return order;
}

// 16 experts in 4 groups of 4: the experts of the 2 groups whose two largest keys sum highest.
std::vector<bool> best_two_groups(const std::vector<double>& keys) {
    std::vector<double> group_score(4);
    for (int g = 0; g < 4; ++g) {
        std::vector<double> members(keys.begin() + 4 * g, keys.begin() + 4 * g + 4);
        std::sort(members.rbegin(), members.rend());
        group_score[g] = members[0] + members[1];
    }
    std::vector<bool> allowed(16, false);
    for (int g : top(group_score, 2, std::vector<bool>(4, true))) {
        std::fill(allowed.begin() + 4 * g, allowed.begin() + 4 * g + 4, true);
    }
    return allowed;
}

// Top-2 of 16 experts from the best 2 of 4 groups of 4, without bias updates.
BuiltLayer grouped_layer() {
    return build_layer("deepseek",
                       {{"k", std::int64_t{2}},
                        {"groups", std::int64_t{4}},
                        {"topk_groups", std::int64_t{2}},
                        {"bias_rate", 0.0}},
                       LayerSpec{.experts = 16});
}

std::set<std::int64_t> row_set(const at::Tensor& indices, std::int64_t t) {
    std::set<std::int64_t> out;
    for (std::int64_t j = 0; j < indices.size(1); ++j)
        out.insert(indices[t][j].item<std::int64_t>());
    return out;
}

TEST(DeepSeek, WeightsAreTheChosenAffinitiesOverTheirSumTimesTheScale) {
    BuiltLayer built =
        build_layer("deepseek", {{"k", std::int64_t{3}}, {"route_scale", 2.5}, {"bias_rate", 0.0}},
                    LayerSpec{.experts = 6});
    at::manual_seed(4);
    const at::Tensor h = at::randn({16, 8});
    const sdk::RoutingDecision d = built.forward(h, at::zeros({16}, at::kLong), false).routing[0];
    const auto s = affinities(built, h);
    for (std::int64_t t = 0; t < 16; ++t) {
        const std::vector<int> chosen = top(s[t], 3, std::vector<bool>(6, true));
        const double sum = s[t][chosen[0]] + s[t][chosen[1]] + s[t][chosen[2]];
        for (int j = 0; j < 3; ++j) {
            // Slot j of moelab's decision holds expert chosen[j] (both largest first).
            EXPECT_EQ(d.expert_indices[t][j].item<std::int64_t>(), chosen[j]) << t;
            EXPECT_NEAR(d.combine_weights[t][j].item<double>(), 2.5 * s[t][chosen[j]] / sum, 1e-6);
        }
    }
}

// Experts 0..15 in 4 groups of 4 with a bias in place: a token first keeps its 2 groups with the
// largest sum of their two largest keys (affinity + bias), then its 2 best keys among those 8
// experts; the weights are the affinities alone.
TEST(DeepSeek, GroupLimitedSelectionKeepsTheExpertsOfTheBestGroups) {
    BuiltLayer built = grouped_layer();
    at::manual_seed(7);
    const at::Tensor bias = at::rand({16}) * 0.2 - 0.1;
    {
        torch::NoGradGuard no_grad;
        built.buffer("block.router.expert_bias").copy_(bias);
    }
    const at::Tensor h = at::randn({64, 8});
    const sdk::RoutingDecision d = built.forward(h, at::zeros({64}, at::kLong), false).routing[0];
    const auto s = affinities(built, h);
    int differs_from_plain_top_k = 0;
    for (std::int64_t t = 0; t < 64; ++t) {
        std::vector<double> keys(16);
        for (int e = 0; e < 16; ++e) keys[e] = s[t][e] + bias[e].item<double>();
        const std::vector<int> chosen = top(keys, 2, best_two_groups(keys));
        EXPECT_EQ(row_set(d.expert_indices, t), (std::set<std::int64_t>{chosen[0], chosen[1]}))
            << "token " << t;
        const double sum = s[t][chosen[0]] + s[t][chosen[1]];
        for (int j = 0; j < 2; ++j) {
            const std::int64_t e = d.expert_indices[t][j].item<std::int64_t>();
            EXPECT_NEAR(d.combine_weights[t][j].item<double>(), s[t][e] / sum, 1e-6);
        }
        const std::vector<int> plain = top(keys, 2, std::vector<bool>(16, true));
        if (std::set<int>(plain.begin(), plain.end()) !=
            std::set<int>(chosen.begin(), chosen.end())) {
            ++differs_from_plain_top_k;
        }
    }
    // The case is not vacuous: the group limit changes the choice of some tokens.
    EXPECT_GT(differs_from_plain_top_k, 3);
}

// Under disable_top 1 the host removes each token's expert of highest affinity. Its group then
// ranks by what it still offers: the removed expert counts as a key below all of the token's
// selectable ones (written out here), and every token still gets 2 experts, never the removed one.
TEST(DeepSeek, GroupsRankByTheExpertsTheyStillOfferUnderDisableTop) {
    BuiltLayer built = grouped_layer();
    at::manual_seed(8);
    const at::Tensor h = at::randn({64, 8});
    const core::Perturbation disable{.kind = core::PerturbationKind::kDisableTop, .strength = 1};
    const sdk::RoutingDecision d =
        built.forward(h, at::zeros({64}, at::kLong), false, &disable).routing[0];
    const auto s = affinities(built, h);
    for (std::int64_t t = 0; t < 64; ++t) {
        const int removed = top(s[t], 1, std::vector<bool>(16, true))[0];
        std::vector<double> keys = s[t];
        double lowest = 2;
        for (int e = 0; e < 16; ++e) {
            if (e != removed) lowest = std::min(lowest, keys[e]);
        }
        keys[removed] = lowest - 1;
        std::vector<bool> allowed = best_two_groups(keys);
        allowed[removed] = false;
        const std::vector<int> chosen = top(keys, 2, allowed);
        EXPECT_EQ(row_set(d.expert_indices, t), (std::set<std::int64_t>{chosen[0], chosen[1]}))
            << "token " << t;
    }
}

// One training forward of micro-batch `h` at optimizer step `step`.
sdk::RoutingDecision train_step(BuiltLayer& built, const at::Tensor& h, std::int64_t step,
                                bool training = true) {
    built.layer->train(training);
    sdk::BlockInput input;
    input.hidden = h;
    input.token_ids = at::zeros({h.size(0)}, at::kLong);
    input.training = training;
    input.step = step;
    return built.layer->forward(input, nullptr, nullptr).routing[0];
}

// Note [Auxiliary-loss-free balancing]: b_e += rate * sign(mean load - load_e) once per optimizer
// step, over the loads of all its micro-batches; the bias steers selection, not the weights.
TEST(DeepSeek, BiasMovesTowardsBalanceOncePerOptimizerStep) {
    BuiltLayer built =
        build_layer("deepseek", {{"k", std::int64_t{1}}, {"bias_rate", 0.1}, {"normalize", false}},
                    LayerSpec{.d_model = 4, .experts = 4});
    torch::NoGradGuard no_grad;
    // The router sees the normalised input times the identity: token t's logits are its row.
    built.parameter("block.router.weight").copy_(at::eye(4) * 4);
    auto tokens_to = [](std::vector<int> experts) {
        at::Tensor h = at::full({static_cast<std::int64_t>(experts.size()), 4}, -1.0);
        for (std::size_t t = 0; t < experts.size(); ++t) h[t][experts[t]] = 3.0;
        return h;
    };
    auto bias = [&] { return built.buffer("block.router.expert_bias").clone(); };

    // Step 0 in two micro-batches: loads 3, 1, 1, 0 (mean 1.25) over the whole step.
    train_step(built, tokens_to({0, 0, 1}), 0);
    EXPECT_TRUE(at::equal(bias(), at::zeros({4}))) << "no update inside a step";
    train_step(built, tokens_to({0, 2}), 0);
    EXPECT_TRUE(at::equal(bias(), at::zeros({4}))) << "no update inside a step";
    // Step 1 begins: step 0's update, sign(1.25 - load) * 0.1, then nothing more during step 1.
    train_step(built, tokens_to({3, 3}), 1);
    const at::Tensor after_step_0 = at::tensor({-0.1f, 0.1f, 0.1f, 0.1f});
    EXPECT_TRUE(at::allclose(bias(), after_step_0)) << bias();
    train_step(built, tokens_to({3, 3}), 1);
    EXPECT_TRUE(at::allclose(bias(), after_step_0)) << bias();
    // Step 2: step 1's loads were 0, 0, 0, 4 (mean 1): +0.1, +0.1, +0.1, -0.1.
    train_step(built, tokens_to({1}), 2);
    EXPECT_TRUE(at::allclose(bias(), at::tensor({0.0f, 0.2f, 0.2f, 0.0f}))) << bias();
    // An evaluation applies the complete pending step (step 2's loads 0, 1, 0, 0, mean 0.25:
    // +0.1, -0.1, +0.1, +0.1) and counts nothing; the next training step finds nothing pending.
    train_step(built, tokens_to({1, 1}), 0, /*training=*/false);
    const at::Tensor after_step_2 = at::tensor({0.1f, 0.1f, 0.3f, 0.1f});
    EXPECT_TRUE(at::allclose(bias(), after_step_2)) << bias();
    EXPECT_EQ(built.buffer("block.router.pending_step").item<std::int64_t>(), -1);
    EXPECT_TRUE(at::equal(built.buffer("block.router.pending_load"), at::zeros({4})));
    train_step(built, tokens_to({0, 1, 2, 3}), 3);
    EXPECT_TRUE(at::allclose(bias(), after_step_2)) << bias();

    // Selection only: expert 0's affinity beats expert 2's by less than their bias gap of 0.2, so
    // the token goes to expert 2, weighted by expert 2's own affinity (normalize = false).
    at::Tensor h = at::zeros({1, 4});
    h[0][0] = 1.0;
    h[0][2] = 0.9;
    const sdk::RoutingDecision d = train_step(built, h, 3, /*training=*/false);
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight"));
    const double s0 = 1 / (1 + std::exp(-4 * x[0][0].item<double>()));
    const double s2 = 1 / (1 + std::exp(-4 * x[0][2].item<double>()));
    ASSERT_GT(s0, s2);
    ASSERT_LT(s0 - s2, 0.2);
    EXPECT_EQ(d.expert_indices[0][0].item<std::int64_t>(), 2);
    EXPECT_NEAR(d.combine_weights[0][0].item<double>(), s2, 1e-6);
}

}  // namespace
}  // namespace moelab::tests

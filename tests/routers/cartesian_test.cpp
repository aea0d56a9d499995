// CartesianMoE (methods.md §2.2): the block equals a hand-written two-stage reference built from
// its own parameters, and the second router sees the residual-updated, re-normalised stream.

#include <gtest/gtest.h>

#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

// One sub-layer written out per token: softmax over all experts, top-k, renormalise, weighted
// experts, shared expert mixed by the 2-way softmax.
at::Tensor reference_sublayer(const BuiltLayer& built, const std::string& which,
                              const at::Tensor& h, std::int64_t k, at::Tensor* probs_out) {
    auto p = [&](const std::string& name) {
        return built.parameter("block." + which + "." + name);
    };
    const at::Tensor x = naive_rms_norm(h, p("norm.weight"));
    const at::Tensor probs = x.matmul(p("router").t()).softmax(-1);
    *probs_out = probs;
    const at::Tensor w_in = p("experts.w_in"), w_out = p("experts.w_out");
    std::vector<at::Tensor> rows;
    for (std::int64_t t = 0; t < h.size(0); ++t) {
        auto [top, idx] = probs[t].topk(k);
        top = top / top.sum();
        at::Tensor routed = at::zeros({h.size(1)});
        for (std::int64_t s = 0; s < k; ++s) {
            const std::int64_t e = idx[s].item<std::int64_t>();
            routed = routed + top[s] * naive_swiglu(x[t], w_in[e], w_out[e]);
        }
        const at::Tensor c = (p("mixing_weight").matmul(x[t]) + p("mixing_bias")).softmax(-1);
        const at::Tensor shared = naive_swiglu(x[t], p("shared.w_in")[0], p("shared.w_out")[0]);
        rows.push_back(c[0] * routed + c[1] * shared);
    }
    return at::stack(rows);
}

TEST(Cartesian, EqualsTheTwoStageReference) {
    BuiltLayer built = build_layer("cartesian", {}, LayerSpec{.experts = 5, .d_ff_expert = 8});
    // Sub-experts have d_ff_expert / grain_level = 4.
    EXPECT_EQ(built.parameter("block.first.experts.w_out").size(1), 4);
    at::manual_seed(6);
    const at::Tensor h = at::randn({24, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({24}, at::kLong), true);

    at::Tensor probs_a, probs_b;
    const at::Tensor middle = h + reference_sublayer(built, "first", h, 2, &probs_a);
    const at::Tensor expected = middle + reference_sublayer(built, "second", middle, 2, &probs_b);
    EXPECT_LT((out.hidden - expected).abs().max().item<double>(), 1e-5);

    // Two routing decisions; the second router's distribution is that of the updated stream
    // h + u_A, re-normalised by its own norm, not of h.
    ASSERT_EQ(out.routing.size(), 2u);
    EXPECT_LT((out.routing[0].probs - probs_a).abs().max().item<double>(), 1e-6);
    EXPECT_LT((out.routing[1].probs - probs_b).abs().max().item<double>(), 1e-6);
    at::Tensor probs_on_h;
    reference_sublayer(built, "second", h, 2, &probs_on_h);
    EXPECT_GT((out.routing[1].probs - probs_on_h).abs().max().item<double>(), 1e-3);
    // One balance loss per router.
    ASSERT_EQ(out.aux_losses.size(), 2u);
    EXPECT_EQ(out.aux_losses[0].first, "balance_a");
    EXPECT_EQ(out.aux_losses[1].first, "balance_b");
}

// disable_top on a block with two routers, exactly as defined: the perturbed router chooses the
// top-2 of its clean probabilities with its argmax removed (renormalised), and a router left out
// of `routers` routes exactly as without the perturbation.
TEST(Cartesian, DisableTopActsOnTheRoutersItNamesAsDefined) {
    BuiltLayer built = build_layer("cartesian", {}, LayerSpec{.experts = 5, .d_ff_expert = 8});
    at::manual_seed(8);
    const at::Tensor h = at::randn({32, 8});
    const at::Tensor ids = at::zeros({32}, at::kLong);
    const sdk::BlockOutput clean = built.forward(h, ids, false);

    // The expected choice of a router from its clean probabilities: top-2 without the argmax.
    auto without_top = [](const at::Tensor& probs) {
        const at::Tensor removed = probs.scatter(1, probs.argmax(1, true), 0.0);
        auto [weights, indices] = removed.topk(2, 1);
        return std::pair{indices, weights / weights.sum(1, true)};
    };
    core::Perturbation second_only{.kind = core::PerturbationKind::kDisableTop, .strength = 1};
    second_only.routers = {1};
    const sdk::BlockOutput b = built.forward(h, ids, false, &second_only);
    EXPECT_TRUE(at::equal(b.routing[0].expert_indices, clean.routing[0].expert_indices));
    EXPECT_TRUE(at::equal(b.routing[0].combine_weights, clean.routing[0].combine_weights));
    const auto [b_indices, b_weights] = without_top(b.routing[1].probs);
    EXPECT_TRUE(at::equal(b.routing[1].expert_indices, b_indices));
    EXPECT_TRUE(at::allclose(b.routing[1].combine_weights, b_weights, 1e-6, 1e-6));

    const core::Perturbation both{.kind = core::PerturbationKind::kDisableTop, .strength = 1};
    const sdk::BlockOutput ab = built.forward(h, ids, false, &both);
    for (int r = 0; r < 2; ++r) {
        const auto [indices, weights] = without_top(ab.routing[r].probs);
        EXPECT_TRUE(at::equal(ab.routing[r].expert_indices, indices)) << "router " << r;
        EXPECT_TRUE(at::allclose(ab.routing[r].combine_weights, weights, 1e-6, 1e-6))
            << "router " << r;
    }
    // The first router's clean probabilities are the same in all three forwards.
    EXPECT_TRUE(at::allclose(ab.routing[0].probs, clean.routing[0].probs));
}

TEST(Cartesian, ParametersMatchTopKWithFullSizeExperts) {
    // 2 sub-layers x experts x (d_ff_expert / 2) = experts x d_ff_expert: the expert parameters
    // of a top-k layer with the same [moe] settings.
    BuiltLayer cartesian =
        build_layer("cartesian", {{"shared", false}}, LayerSpec{.experts = 4, .d_ff_expert = 8});
    BuiltLayer topk = build_layer("topk", {}, LayerSpec{.experts = 4, .d_ff_expert = 8});
    auto expert_numel = [](const BuiltLayer& built) {
        std::int64_t n = 0;
        for (const auto& bank : built.layer->banks()) {
            for (const auto& p : bank->parameters()) n += p.numel();
        }
        return n;
    };
    EXPECT_EQ(expert_numel(cartesian), expert_numel(topk));
}

}  // namespace
}  // namespace moelab::tests

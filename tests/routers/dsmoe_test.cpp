// DSMoE (methods.md §3): the thresholded forward, the straight-through gradients (inactive
// experts exactly zero, every gate non-zero), dense compute in training and sparse in inference,
// and the exact dense -> DSMoE conversion.

#include <gtest/gtest.h>

#include <torch/autograd.h>
#include <nlohmann/json.hpp>

#include "core/model/swiglu_ffn.h"
#include "core/train/init_from.h"
#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

// h + n / #active * sum_i G(q_i) o_i, with G(q) = q if q > tau else 0 (and 0 when none is active).
at::Tensor thresholded_reference(const BuiltLayer& built, const at::Tensor& h, double tau) {
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight"));
    const at::Tensor q = at::sigmoid(x.matmul(built.parameter("block.gate").t()));
    const at::Tensor w_in = built.parameter("block.experts.w_in");
    const at::Tensor w_out = built.parameter("block.experts.w_out");
    const std::int64_t n = w_in.size(0);
    std::vector<at::Tensor> rows;
    for (std::int64_t t = 0; t < h.size(0); ++t) {
        at::Tensor sum = at::zeros({h.size(1)});
        std::int64_t active = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            const double g = q[t][i].item<double>();
            if (g <= tau) continue;
            ++active;
            sum = sum + g * naive_swiglu(x[t], w_in[i], w_out[i]);
        }
        rows.push_back(h[t] + sum * (static_cast<double>(n) / std::max<std::int64_t>(1, active)));
    }
    return at::stack(rows);
}

TEST(DsMoe, ForwardEqualsTheThresholdedFormulaInTrainingAndInference) {
    for (const double tau : {0.3, 0.5, 0.7}) {
        BuiltLayer built = build_layer("dsmoe", {{"tau", tau}});
        at::manual_seed(1);
        const at::Tensor h = at::randn({40, 8});
        const at::Tensor expected = thresholded_reference(built, h, tau);
        for (const bool training : {true, false}) {
            const sdk::BlockOutput out = built.forward(h, at::zeros({40}, at::kLong), training);
            EXPECT_LT((out.hidden - expected).abs().max().item<double>(), 1e-5)
                << "tau " << tau << (training ? " training" : " inference");
        }
    }
}

TEST(DsMoe, InactiveExpertsGetZeroGradientWhileEveryGateLearns) {
    BuiltLayer built = build_layer("dsmoe", {{"tau", 0.5}});
    {
        // Gate row 3 = 0: q_3 = sigmoid(0) = 0.5, never above tau, so expert 3 is inactive for
        // every token, while sigmoid'(0) = 1/4 lets its gate learn.
        torch::NoGradGuard no_grad;
        built.parameter("block.gate")[3].zero_();
    }
    at::manual_seed(2);
    const at::Tensor h = at::randn({64, 8});
    core::LayerRoutingStats stats;
    const sdk::BlockOutput out =
        built.forward(h, at::zeros({64}, at::kLong), true, nullptr, &stats);
    ASSERT_FALSE(out.routing[0].active_mask.select(1, 3).any().item<bool>());
    (out.hidden * at::randn_like(out.hidden)).sum().backward();

    const at::Tensor w_in_grad = built.parameter("block.experts.w_in").grad();
    const at::Tensor w_out_grad = built.parameter("block.experts.w_out").grad();
    EXPECT_EQ(w_in_grad[3].abs().max().item<double>(), 0.0);
    EXPECT_EQ(w_out_grad[3].abs().max().item<double>(), 0.0);
    const at::Tensor gate_grad = built.parameter("block.gate").grad();
    for (std::int64_t i = 0; i < 4; ++i) {
        EXPECT_GT(gate_grad[i].abs().sum().item<double>(), 0.0) << "gate " << i;
        if (i != 3 && out.routing[0].active_mask.select(1, i).any().item<bool>()) {
            EXPECT_GT(w_in_grad[i].abs().sum().item<double>(), 0.0) << "active expert " << i;
        }
    }
    // Training computed every expert on every token (the gates' gradient needs all outputs).
    const auto trained = stats.summary()["banks"]["experts"]["tokens_per_expert"];
    EXPECT_EQ(trained, nlohmann::json({64, 64, 64, 64}));
}

TEST(DsMoe, InferenceComputesOnlyTheActiveExperts) {
    BuiltLayer built = build_layer("dsmoe", {{"tau", 0.5}});
    at::manual_seed(3);
    const at::Tensor h = at::randn({64, 8});
    core::LayerRoutingStats stats;
    const sdk::BlockOutput out =
        built.forward(h, at::zeros({64}, at::kLong), false, nullptr, &stats);
    const at::Tensor active = out.routing[0].active_mask;
    const auto computed = stats.summary()["banks"]["experts"]["tokens_per_expert"];
    std::int64_t total = 0;
    for (std::int64_t i = 0; i < 4; ++i) {
        EXPECT_EQ(computed[i].get<std::int64_t>(), active.select(1, i).sum().item<std::int64_t>());
        total += computed[i].get<std::int64_t>();
    }
    EXPECT_LT(total, 64 * 4);  // some pairs were skipped
    EXPECT_GT(total, 0);
}

TEST(DsMoe, SparsityLossIsTheMeanThresholdedGateAndGReachesOnlyActiveGates) {
    at::manual_seed(7);
    const at::Tensor h = at::randn({32, 8});
    for (const std::string form : {"G", "S"}) {
        BuiltLayer built = build_layer("dsmoe", {{"tau", 0.5}, {"sparsity_loss", form}});
        {
            torch::NoGradGuard no_grad;
            built.parameter("block.gate")[3].zero_();  // q_3 = 0.5: inactive everywhere
        }
        const sdk::BlockOutput out = built.forward(h, at::zeros({32}, at::kLong), true);
        ASSERT_EQ(out.aux_losses.size(), 1u);
        ASSERT_EQ(out.aux_losses[0].first, "sparsity");
        // (1 / (L N)) sum_i G(q_i), mean over tokens; L = 2 MoE layers, N = 4 experts.
        const at::Tensor q = out.routing[0].probs;
        const double expected = (q * (q > 0.5)).sum(1).mean().item<double>() / (2.0 * 4.0);
        EXPECT_NEAR(out.aux_losses[0].second.item<double>(), expected, 1e-7) << form;
        out.aux_losses[0].second.backward();
        const at::Tensor gate_grad = built.parameter("block.gate").grad();
        // G: the inactive gate gets nothing from the loss; S: every gate does.
        if (form == "G") {
            EXPECT_EQ(gate_grad[3].abs().max().item<double>(), 0.0);
        } else {
            EXPECT_GT(gate_grad[3].abs().sum().item<double>(), 0.0);
        }
    }
}

TEST(DsMoe, NoActiveExpertLeavesTheStreamUnchanged) {
    BuiltLayer built = build_layer("dsmoe", {{"tau", 1.0}});
    const at::Tensor h = at::randn({16, 8});
    for (const bool training : {true, false}) {
        const sdk::BlockOutput out = built.forward(h, at::zeros({16}, at::kLong), training);
        EXPECT_TRUE(at::equal(out.hidden, h));
        EXPECT_EQ(out.stats[0].second.item<double>(), 0.0);  // active_experts_mean
    }
}

TEST(DsMoe, ConversionFromADenseFfnIsExact) {
    // A dense SwiGLU FFN (d_ff 24) with non-trivial norm, split into 4 experts of 6.
    core::SwiGluFfn dense(8, 24, 1e-5, 0.5, 0.5, /*seed=*/3);
    {
        torch::NoGradGuard no_grad;
        for (auto& item : dense.named_parameters()) {
            if (item.key() == "norm.weight") item.value().uniform_(0.5, 1.5);
        }
    }
    BuiltLayer built =
        build_layer("dsmoe", {{"force_open", true}, {"rescale", false}}, LayerSpec{.experts = 4});
    {
        torch::NoGradGuard no_grad;
        auto [w_in, w_out] = core::partition_swiglu(dense.w_in, dense.w_out, 4);
        built.parameter("block.experts.w_in").copy_(w_in);
        built.parameter("block.experts.w_out").copy_(w_out);
        built.parameter("block.norm.weight").copy_(dense.named_parameters()["norm.weight"]);
    }
    at::manual_seed(4);
    const at::Tensor h = at::randn({50, 8});
    const at::Tensor expected = dense.forward(h);
    for (const bool training : {true, false}) {
        const at::Tensor converted = built.forward(h, at::zeros({50}, at::kLong), training).hidden;
        EXPECT_LT((converted - expected).abs().max().item<double>(), 1e-5);
    }
}

}  // namespace
}  // namespace moelab::tests

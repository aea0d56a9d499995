// The host's shared gate ([moe] shared_gate, the SMoE-Share baseline of methods.md §2.3): for any
// router in gate form, routed and shared expert outputs are mixed per token by a learned 2-way
// softmax over the normalised input, c = softmax(C x + b), y = h + c_0 routed + c_1 shared.

#include <gtest/gtest.h>

#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

// The written-out formula for a router whose decision is "top-k of softmax(W x), renormalised"
// (topk) or "the shortest prefix above p, raw weights" (topp, via `weights_of`).
at::Tensor expected_output(
    const BuiltLayer& built, const at::Tensor& h,
    const std::function<std::vector<std::pair<std::int64_t, at::Tensor>>(const at::Tensor& probs)>&
        weights_of) {
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight"));
    const at::Tensor probs = x.matmul(built.parameter("block.router.weight").t()).softmax(-1);
    const at::Tensor c = at::linear(x, built.parameter("block.shared_gate_weight"),
                                    built.parameter("block.shared_gate_bias"))
                             .softmax(-1);
    const at::Tensor w_in = built.parameter("block.experts.w_in");
    const at::Tensor w_out = built.parameter("block.experts.w_out");
    std::vector<at::Tensor> rows;
    for (std::int64_t t = 0; t < h.size(0); ++t) {
        at::Tensor routed = at::zeros({h.size(1)});
        for (const auto& [e, weight] : weights_of(probs[t])) {
            routed = routed + weight * naive_swiglu(x[t], w_in[e], w_out[e]);
        }
        const at::Tensor shared = naive_swiglu(x[t], built.parameter("block.shared.w_in")[0],
                                               built.parameter("block.shared.w_out")[0]);
        rows.push_back(h[t] + c[t][0] * routed + c[t][1] * shared);
    }
    return at::stack(rows);
}

TEST(SharedGate, MixesTopKRoutedAndSharedExpertsWithATwoWaySoftmax) {
    BuiltLayer built = build_layer("topk", {{"k", std::int64_t{2}}},
                                   LayerSpec{.shared_experts = 1, .shared_gate = true});
    at::manual_seed(8);
    const at::Tensor h = at::randn({10, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({10}, at::kLong), false);
    const at::Tensor expected = expected_output(built, h, [](const at::Tensor& p) {
        auto [top, idx] = p.topk(2);
        top = top / top.sum();
        return std::vector<std::pair<std::int64_t, at::Tensor>>{
            {idx[0].item<std::int64_t>(), top[0]}, {idx[1].item<std::int64_t>(), top[1]}};
    });
    EXPECT_LT((out.hidden - expected).abs().max().item<double>(), 1e-5);

    // The mixing gate learns.
    const sdk::BlockOutput trained = built.forward(h, at::zeros({10}, at::kLong), true);
    (trained.hidden * at::randn_like(trained.hidden)).sum().backward();
    for (const char* name : {"block.shared_gate_weight", "block.shared_gate_bias"}) {
        EXPECT_GT(built.parameter(name).grad().abs().sum().item<double>(), 0.0) << name;
    }
}

// The same gate serves every gate router, with no option of its own: TopP (the CartesianMoE
// authors' TopP baseline runs with the gated shared expert).
TEST(SharedGate, WorksUnchangedForAnotherGateRouter) {
    const double p_threshold = 0.4;
    BuiltLayer built = build_layer("topp", {{"p", p_threshold}},
                                   LayerSpec{.shared_experts = 1, .shared_gate = true});
    at::manual_seed(9);
    const at::Tensor h = at::randn({10, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({10}, at::kLong), false);
    const at::Tensor expected = expected_output(built, h, [&](const at::Tensor& p) {
        auto [sorted, idx] = p.sort(/*dim=*/0, /*descending=*/true);
        std::vector<std::pair<std::int64_t, at::Tensor>> chosen;
        double cumulative = 0;
        for (std::int64_t s = 0; s < p.size(0) && cumulative <= p_threshold; ++s) {
            chosen.emplace_back(idx[s].item<std::int64_t>(), sorted[s]);
            cumulative += sorted[s].item<double>();
        }
        return chosen;
    });
    EXPECT_LT((out.hidden - expected).abs().max().item<double>(), 1e-5);
}

TEST(SharedGate, WithoutTheGateSharedExpertsAreAdded) {
    BuiltLayer built =
        build_layer("topk", {{"k", std::int64_t{1}}}, LayerSpec{.shared_experts = 1});
    EXPECT_EQ(built.layer->named_parameters().find("block.shared_gate_weight"), nullptr);
    at::manual_seed(10);
    const at::Tensor h = at::randn({6, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({6}, at::kLong), false);
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight"));
    const at::Tensor probs = x.matmul(built.parameter("block.router.weight").t()).softmax(-1);
    std::vector<at::Tensor> rows;
    for (std::int64_t t = 0; t < 6; ++t) {
        const std::int64_t e = probs[t].argmax().item<std::int64_t>();
        const at::Tensor routed = naive_swiglu(x[t], built.parameter("block.experts.w_in")[e],
                                               built.parameter("block.experts.w_out")[e]);
        const at::Tensor shared = naive_swiglu(x[t], built.parameter("block.shared.w_in")[0],
                                               built.parameter("block.shared.w_out")[0]);
        // k = 1 is not renormalised: the weight is the probability itself.
        rows.push_back(h[t] + probs[t][e] * routed + shared);
    }
    EXPECT_LT((out.hidden - at::stack(rows)).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace moelab::tests

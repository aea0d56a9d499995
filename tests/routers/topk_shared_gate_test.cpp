// The topk router's shared_gate (the SMoE-Share baseline, methods.md §2.3): routed and shared
// expert outputs mixed per token by a learned 2-way softmax.

#include <gtest/gtest.h>

#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

TEST(TopKSharedGate, MixesRoutedAndSharedExpertsWithATwoWaySoftmax) {
    BuiltLayer built = build_layer("topk", {{"shared_gate", true}, {"k", std::int64_t{2}}},
                                   LayerSpec{.shared_experts = 1});
    at::manual_seed(8);
    const at::Tensor h = at::randn({10, 8});
    const sdk::BlockOutput out = built.forward(h, at::zeros({10}, at::kLong), false);

    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm.weight"));
    const at::Tensor probs = x.matmul(built.parameter("block.router.weight").t()).softmax(-1);
    const at::Tensor c = at::linear(x, built.parameter("block.router.shared_gate_weight"),
                                    built.parameter("block.router.shared_gate_bias"))
                             .softmax(-1);
    const at::Tensor w_in = built.parameter("block.experts.w_in");
    const at::Tensor w_out = built.parameter("block.experts.w_out");
    std::vector<at::Tensor> rows;
    for (std::int64_t t = 0; t < 10; ++t) {
        auto [top, idx] = probs[t].topk(2);
        top = top / top.sum();
        at::Tensor routed = at::zeros({8});
        for (std::int64_t s = 0; s < 2; ++s) {
            const auto e = idx[s].item<std::int64_t>();
            routed = routed + top[s] * naive_swiglu(x[t], w_in[e], w_out[e]);
        }
        const at::Tensor shared = naive_swiglu(x[t], built.parameter("block.shared.w_in")[0],
                                               built.parameter("block.shared.w_out")[0]);
        rows.push_back(h[t] + c[t][0] * routed + c[t][1] * shared);
    }
    EXPECT_LT((out.hidden - at::stack(rows)).abs().max().item<double>(), 1e-5);

    // The mixing gate learns.
    const sdk::BlockOutput trained = built.forward(h, at::zeros({10}, at::kLong), true);
    (trained.hidden * at::randn_like(trained.hidden)).sum().backward();
    for (const char* name : {"block.router.shared_gate_weight", "block.router.shared_gate_bias"}) {
        EXPECT_GT(built.parameter(name).grad().abs().sum().item<double>(), 0.0) << name;
    }
}

TEST(TopKSharedGate, IsRefusedWithoutSharedExperts) {
    const core::RegisteredRouter& topk = *builtin_plugins().find_router("topk");
    sdk::CapabilityQuery query;
    query.model.expert_count = 4;
    Options values;
    for (const auto& p : topk.component.params.specs()) values[p.name] = p.default_value;
    values["shared_gate"] = true;
    const sdk::Support support = topk.component.supports(query, sdk::Params(values));
    EXPECT_FALSE(support.ok);
    EXPECT_NE(support.reason.find("[moe] shared_experts"), std::string::npos) << support.reason;
}

}  // namespace
}  // namespace moelab::tests

// Finedeep (methods.md §4, an interpretation): the parameters of the dense FFN it replaces, both
// gate inputs against a hand-written reference, and the non-sparse activation rate statistic.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/model/swiglu_ffn.h"
#include "naive_moe.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

std::int64_t numel(const std::vector<at::Tensor>& tensors) {
    std::int64_t n = 0;
    for (const auto& t : tensors) n += t.numel();
    return n;
}

TEST(Finedeep, HasTheParametersOfTheDenseFfnPlusItsGatesAndNorms) {
    // d_ff 24 = M 2 x K 3 x 4.
    const Options options = {{"sublayers", std::int64_t{2}},
                             {"experts_per_sublayer", std::int64_t{3}}};
    for (const std::string gate_input : {"output", "input"}) {
        Options o = options;
        o["gate_input"] = gate_input;
        BuiltLayer built = build_layer("finedeep", o, LayerSpec{.d_ff = 24});
        core::SwiGluFfn dense(8, 24, 1e-5, 0.02, 0.02, 1);
        std::int64_t experts = 0;
        for (const auto& bank : built.layer->banks()) experts += numel(bank->parameters());
        EXPECT_EQ(experts, dense.w_in.numel() + dense.w_out.numel());
        // Around the experts: M norms (the dense FFN has one) and the gates.
        const std::int64_t gates = gate_input == "output" ? 2 * 8 : 2 * 3 * 8;
        EXPECT_EQ(numel(built.layer->parameters()), numel(dense.parameters()) + 8 + gates)
            << gate_input;
    }
}

TEST(Finedeep, BothGateInputsMatchTheReference) {
    for (const std::string gate_input : {"output", "input"}) {
        BuiltLayer built = build_layer("finedeep",
                                       {{"sublayers", std::int64_t{2}},
                                        {"experts_per_sublayer", std::int64_t{3}},
                                        {"gate_input", gate_input}},
                                       LayerSpec{.d_ff = 24});
        at::manual_seed(5);
        const at::Tensor h = at::randn({12, 8});
        at::Tensor z = h;
        for (int m = 0; m < 2; ++m) {
            const std::string i = std::to_string(m);
            const at::Tensor x = naive_rms_norm(z, built.parameter("block.norm" + i + ".weight"));
            const at::Tensor w_in = built.parameter("block.experts" + i + ".w_in");
            const at::Tensor w_out = built.parameter("block.experts" + i + ".w_out");
            const at::Tensor gate = built.parameter("block.gate" + i);
            at::Tensor update = at::zeros_like(z);
            for (std::int64_t k = 0; k < 3; ++k) {
                const at::Tensor e = naive_swiglu(x, w_in[k], w_out[k]);  // (tokens, d)
                const at::Tensor g = gate_input == "output" ? at::sigmoid(e.matmul(gate))
                                                            : at::sigmoid(x.matmul(gate[k]));
                update = update + g.unsqueeze(1) * e;
            }
            z = z + update;
        }
        const sdk::BlockOutput out = built.forward(h, at::zeros({12}, at::kLong), true);
        EXPECT_LT((out.hidden - z).abs().max().item<double>(), 1e-5) << gate_input;
        EXPECT_EQ(out.routing.size(), 2u);
        EXPECT_EQ(out.routing[0].expert_indices.size(1), 3);  // every expert, every token
    }
}

TEST(Finedeep, ReportsTheNonSparseActivationRate) {
    const double epsilon = 0.05;
    BuiltLayer built = build_layer("finedeep", {{"nsar_epsilon", epsilon}}, LayerSpec{.d_ff = 24});
    at::manual_seed(6);
    const at::Tensor h = at::randn({30, 8});
    core::LayerRoutingStats stats;
    built.forward(h, at::zeros({30}, at::kLong), false, 0, &stats);
    // The first sub-layer's rate from its own weights.
    const at::Tensor x = naive_rms_norm(h, built.parameter("block.norm0.weight"));
    const at::Tensor w_in = built.parameter("block.experts0.w_in");  // (K, d, 2 f)
    const std::int64_t f = w_in.size(2) / 2;
    const at::Tensor pre = at::matmul(x.unsqueeze(0), w_in);
    const at::Tensor a = at::silu(pre.narrow(-1, 0, f)) * pre.narrow(-1, f, f);
    const double expected = (a.abs() > epsilon).to(at::kDouble).mean().item<double>();
    const double reported = stats.summary()["banks"]["sublayer0"]["nsar"].get<double>();
    EXPECT_NEAR(reported, expected, 1e-12);
    EXPECT_GT(reported, 0.0);
    EXPECT_LT(reported, 1.0);
}

}  // namespace
}  // namespace moelab::tests

// Properties every router plugin must have, checked for each built-in one: gradients reach all of
// its own parameters, experts that receive no token are harmless, initialisation and routing are
// determined by the seed, and evaluation-time perturbation (disable the top expert) stays finite.

#include <gtest/gtest.h>

#include <torch/autograd.h>

#include "router_fixture.h"

namespace moelab::tests {
namespace {

class EveryRouter : public ::testing::TestWithParam<std::string> {
  protected:
    static bool in_bank(const std::string& name) {
        return name.find("w_in") != std::string::npos || name.find("w_out") != std::string::npos;
    }
    static at::Tensor hidden(std::int64_t tokens, std::uint64_t seed) {
        at::manual_seed(seed);
        return at::randn({tokens, 8});
    }
};

TEST_P(EveryRouter, GradientsReachEveryRouterParameter) {
    BuiltLayer built = build_layer(GetParam(), {});
    const at::Tensor x = hidden(64, 1).requires_grad_(true);
    const at::Tensor ids = at::arange(64, at::kLong) % 16;
    const sdk::BlockOutput out = built.forward(x, ids, /*training=*/true);
    at::Tensor loss = (out.hidden * at::randn_like(out.hidden)).sum();
    for (const auto& [name, aux] : out.aux_losses) loss = loss + aux;
    loss.backward();
    int router_parameters = 0;
    for (const auto& item : built.layer->named_parameters()) {
        if (in_bank(item.key())) continue;
        ++router_parameters;
        ASSERT_TRUE(item.value().grad().defined()) << GetParam() << ": " << item.key();
        EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0)
            << GetParam() << ": " << item.key() << " gets no gradient";
    }
    // Every router but the fixed hash table has parameters of its own, norm aside.
    EXPECT_GE(router_parameters, GetParam() == "hash" ? 1 : 2) << GetParam();
    EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
}

TEST_P(EveryRouter, ExpertsWithoutTokensAreHarmless) {
    // Two tokens cannot reach all experts of most routers: the others get zero rows.
    BuiltLayer built = build_layer(GetParam(), {}, LayerSpec{.experts = 8});
    const at::Tensor x = hidden(2, 2).requires_grad_(true);
    core::LayerRoutingStats stats;
    const sdk::BlockOutput out =
        built.forward(x, at::tensor({3, 12}, at::kLong), /*training=*/true, 0, &stats);
    ASSERT_TRUE(out.hidden.isfinite().all().item<bool>()) << GetParam();
    out.hidden.sum().backward();
    for (const auto& item : built.layer->named_parameters()) {
        if (item.value().grad().defined()) {
            EXPECT_TRUE(item.value().grad().isfinite().all().item<bool>())
                << GetParam() << ": " << item.key();
        }
    }
    EXPECT_TRUE(x.grad().isfinite().all().item<bool>());
}

TEST_P(EveryRouter, IsDeterminedByItsSeed) {
    const at::Tensor x = hidden(32, 3);
    const at::Tensor ids = at::arange(32, at::kLong) % 16;
    BuiltLayer a = build_layer(GetParam(), {}, LayerSpec{.seed = 11});
    BuiltLayer b = build_layer(GetParam(), {}, LayerSpec{.seed = 11});
    BuiltLayer c = build_layer(GetParam(), {}, LayerSpec{.seed = 12});
    const at::Tensor out_a = a.forward(x, ids, false).hidden;
    EXPECT_TRUE(at::equal(out_a, b.forward(x, ids, false).hidden)) << GetParam();
    EXPECT_FALSE(at::equal(out_a, c.forward(x, ids, false).hidden)) << GetParam();
}

TEST_P(EveryRouter, DisablingTheTopExpertStaysFinite) {
    BuiltLayer built = build_layer(GetParam(), {});
    const at::Tensor x = hidden(32, 4);
    const at::Tensor ids = at::arange(32, at::kLong) % 16;
    const sdk::BlockOutput normal = built.forward(x, ids, false);
    const sdk::BlockOutput perturbed = built.forward(x, ids, false, /*disable_top_experts=*/1);
    EXPECT_TRUE(perturbed.hidden.isfinite().all().item<bool>()) << GetParam();
    EXPECT_FALSE(at::equal(normal.hidden, perturbed.hidden)) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(BuiltIn, EveryRouter,
                         ::testing::Values("topk", "topp", "hash", "maskmoe", "cartesian", "dsmoe",
                                           "finedeep"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moelab::tests

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
        built.forward(x, at::tensor({3, 12}, at::kLong), /*training=*/true, nullptr, &stats);
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

// Every perturbation a router lists goes through the host's selection control: the host's
// contract check passes (no disabled expert chosen, every router handed over its scores), the
// output stays finite and differs from plain evaluation; disable_top 0 is plain evaluation bit for
// bit.
TEST_P(EveryRouter, HonoursEveryPerturbationItLists) {
    BuiltLayer built = build_layer(GetParam(), {});
    const at::Tensor x = hidden(32, 4);
    const at::Tensor ids = at::arange(32, at::kLong) % 16;
    const sdk::BlockOutput normal = built.forward(x, ids, false);
    const core::Perturbation zero{.kind = core::PerturbationKind::kDisableTop, .strength = 0};
    EXPECT_TRUE(at::equal(normal.hidden, built.forward(x, ids, false, &zero).hidden));

    const auto& features = builtin_plugins().find_router(GetParam())->component.features;
    EXPECT_FALSE(features.empty()) << GetParam() << " lists no perturbation";
    for (const std::string& name : core::perturbation_kind_names()) {
        core::Perturbation perturbation;
        perturbation.kind = *core::parse_perturbation_kind(name);
        perturbation.strength = perturbation.kind == core::PerturbationKind::kLogitNoise   ? 2.0
                                : perturbation.kind == core::PerturbationKind::kDisableTop ? 1.0
                                                                                           : 0.5;
        const auto feature = std::string(core::perturbation_feature(perturbation.kind));
        if (std::find(features.begin(), features.end(), feature) == features.end()) continue;
        sdk::BlockOutput perturbed;
        ASSERT_NO_THROW(perturbed = built.forward(x, ids, false, &perturbation))
            << GetParam() << " under " << name;
        EXPECT_TRUE(perturbed.hidden.isfinite().all().item<bool>()) << GetParam() << " " << name;
        EXPECT_FALSE(at::equal(normal.hidden, perturbed.hidden)) << GetParam() << " " << name;
    }
}

INSTANTIATE_TEST_SUITE_P(BuiltIn, EveryRouter,
                         ::testing::Values("topk", "topp", "hash", "maskmoe", "cartesian", "dsmoe",
                                           "finedeep", "deepseek", "expert_choice"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moelab::tests

namespace moelab::tests {
namespace {

// Top-1 routing with renormalisation would give every token the weight p / p = 1 and the router
// no gradient from the language-model loss; routers renormalise only for k > 1. The router's
// gradient is checked against central finite differences of the loss in one weight entry.
class TopOneRouter : public ::testing::TestWithParam<std::string> {};

TEST_P(TopOneRouter, GetsTheLossGradientThatFiniteDifferencesMeasure) {
    BuiltLayer built = build_layer(GetParam(), {{"k", std::int64_t{1}}, {"balance_coef", 0.0}});
    at::manual_seed(21);
    const at::Tensor x = at::randn({48, 8});
    const at::Tensor ids = at::arange(48, at::kLong) % 16;
    const at::Tensor direction = at::randn({48, 8});
    auto loss = [&] { return (built.forward(x, ids, true).hidden * direction).sum(); };
    at::Tensor weight = built.parameter("block.router.weight");
    loss().backward();
    const at::Tensor grad = weight.grad().clone();
    EXPECT_GT(grad.abs().max().item<double>(), 1e-3) << GetParam();

    const auto [row, col] = [&] {
        const std::int64_t flat = grad.abs().argmax().item<std::int64_t>();
        return std::pair{flat / grad.size(1), flat % grad.size(1)};
    }();
    const double eps = 1e-3;
    torch::NoGradGuard no_grad;
    const double original = weight[row][col].item<double>();
    weight[row][col].fill_(original + eps);
    const double plus = loss().item<double>();
    weight[row][col].fill_(original - eps);
    const double minus = loss().item<double>();
    weight[row][col].fill_(original);
    const double numeric = (plus - minus) / (2 * eps);
    EXPECT_NEAR(grad[row][col].item<double>(), numeric, 2e-2 * std::abs(numeric) + 1e-4)
        << GetParam();
}

INSTANTIATE_TEST_SUITE_P(BuiltIn, TopOneRouter, ::testing::Values("topk", "maskmoe"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moelab::tests

// The host's standard MoE block around a router: end-to-end equality with a hand-written
// reference (norm, fp32 router, top-k, renormalise, experts, residual) for the built-in topk
// router, gradients into the router, fp32 routing under bf16 autocast, and the balance loss.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include <torch/autograd.h>

#include "core/moe/host_expert_bank.h"
#include "core/moe/perturbed_selection.h"
#include "core/moe/standard_block.h"
#include "core/plugin/deferred_checks.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/plugin/plugin_error.h"
#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/sdk/routing_ops.h"
#include "moelab/sdk/version.h"
#include "naive_moe.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace moelab::core {
namespace {

auto test_plugin() {
    auto info = std::make_shared<PluginInfo>();
    info->name = "test";
    info->file = "in-test";
    return std::shared_ptr<const PluginInfo>(info);
}

at::Tensor rms_norm(const at::Tensor& x, double eps) {
    return x * at::rsqrt(x.square().mean(-1, true) + eps);
}

TEST(SwitchBalanceLoss, EqualsTheFormulaOnAHandComputedExample) {
    // f = fraction of assignments per expert, P = mean probability; loss = E * sum f * P.
    const at::Tensor probs = at::tensor({0.7, 0.3, 0.6, 0.4, 0.2, 0.8, 0.9, 0.1}).view({4, 2});
    const at::Tensor top1 = at::tensor({0, 0, 1, 0}, at::kLong).view({4, 1});
    // f = (3/4, 1/4), P = (0.6, 0.4): 2 * (0.75 * 0.6 + 0.25 * 0.4) = 1.1
    EXPECT_NEAR(sdk::switch_balance_loss(probs, top1, 2).item<double>(), 1.1, 1e-6);
    // Empty slots do not count: assignments (0, 1, 0) -> f = (2/3, 1/3):
    // 2 * (2/3 * 0.6 + 1/3 * 0.4) = 1.0666...
    const at::Tensor with_empty = at::tensor({0, -1, 1, -1, -1, -1, 0, -1}, at::kLong).view({4, 2});
    EXPECT_NEAR(sdk::switch_balance_loss(probs, with_empty, 2).item<double>(), 3.2 / 3, 1e-6);
    // Perfectly uniform routing gives 1.
    const at::Tensor uniform = at::full({4, 2}, 0.5);
    const at::Tensor alternating = at::tensor({0, 1, 0, 1}, at::kLong).view({4, 1});
    EXPECT_NEAR(sdk::switch_balance_loss(uniform, alternating, 2).item<double>(), 1.0, 1e-6);
}

class TopKBlock : public ::testing::Test {
  protected:
    void SetUp() override {
        registry_ = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
        ASSERT_NE(registry_.find_router("topk"), nullptr);
    }

    std::shared_ptr<sdk::Router> make_topk(std::int64_t k, bool renormalize) {
        const RegisteredRouter& topk = *registry_.find_router("topk");
        sdk::MoeLayerContext context;
        context.model.d_model = kModel;
        context.model.experts = kExperts;
        context.seed = 17;
        context.init_std = 0.5;
        std::map<std::string, sdk::ParamValue, std::less<>> values;
        for (const auto& spec : topk.component.params.specs())
            values[spec.name] = spec.default_value;
        values["k"] = k;
        values["renormalize"] = renormalize;
        values["balance_coef"] = 0.5;
        return instantiate_router(topk, context, sdk::Params(values));
    }

    static constexpr std::int64_t kTokens = 20, kExperts = 6, kModel = 8, kFf = 5;
    PluginRegistry registry_;
};

TEST_F(TopKBlock, MatchesTheHandWrittenReferenceIncludingRouterGradients) {
    for (const std::int64_t k : {1, 2}) {
        auto router = make_topk(k, /*renormalize=*/true);
        auto bank = std::make_shared<HostExpertBank>(
            sdk::ExpertBankSpec{"experts", kExperts, kModel, kFf, -1}, DispatchPolicy{}, 0.3, 0.3,
            4);
        StandardMoeBlock block(router, registry_.find_router("topk")->plugin, bank, nullptr, kModel,
                               1e-5);
        const at::Tensor hidden = at::randn({kTokens, kModel}).requires_grad_();
        sdk::BlockInput input;
        input.hidden = hidden;
        input.token_ids = at::zeros({kTokens}, at::kLong);
        input.training = true;
        const sdk::BlockOutput output = block.forward(input);

        // Reference, written out.
        const at::Tensor router_weight = router->named_parameters()["weight"];
        const at::Tensor h = hidden.detach().clone().requires_grad_();
        const at::Tensor w = router_weight.detach().clone().requires_grad_();
        const at::Tensor x = rms_norm(h, 1e-5);
        const at::Tensor probs = at::matmul(x, w.t()).softmax(-1);
        auto [top_p, top_i] = probs.topk(k, -1);
        // Renormalised only for k > 1: at k = 1 the weight is the probability itself, so that the
        // router learns from the language-model loss.
        const at::Tensor gates = k > 1 ? top_p / top_p.sum(-1, true) : top_p;
        const at::Tensor expected =
            h + tests::naive_mix(x, top_i, gates, bank->w_in.detach(), bank->w_out.detach());
        EXPECT_TRUE(at::allclose(output.hidden, expected, 1e-5, 1e-5)) << "k=" << k;
        ASSERT_EQ(output.routing.size(), 1u);
        EXPECT_TRUE(at::equal(output.routing[0].expert_indices, top_i));

        // Balance loss is reported with its coefficient and equals the formula.
        ASSERT_EQ(output.aux_losses.size(), 1u);
        EXPECT_EQ(output.aux_losses[0].first, "balance");
        EXPECT_NEAR(output.aux_losses[0].second.item<double>(),
                    0.5 * sdk::switch_balance_loss(probs, top_i, kExperts).item<double>(), 1e-6);

        // Gradients reach the router (through the combine weights) and match the reference.
        const at::Tensor probe = at::randn({kTokens, kModel});
        const at::Tensor grad =
            torch::autograd::grad({(output.hidden * probe).sum()}, {router_weight})[0];
        const at::Tensor expected_grad = torch::autograd::grad({(expected * probe).sum()}, {w})[0];
        EXPECT_GT(grad.abs().max().item<double>(), 1e-3) << "k=" << k;
        EXPECT_TRUE(at::allclose(grad, expected_grad, 1e-4, 1e-5)) << "k=" << k;
    }
}

TEST_F(TopKBlock, SharedExpertsAreAddedForEveryToken) {
    auto router = make_topk(2, true);
    auto bank = std::make_shared<HostExpertBank>(
        sdk::ExpertBankSpec{"experts", kExperts, kModel, kFf, -1}, DispatchPolicy{}, 0.3, 0.3, 4);
    auto shared = std::make_shared<HostExpertBank>(
        sdk::ExpertBankSpec{"shared", 1, kModel, 2 * kFf, 0.0}, DispatchPolicy{}, 0.3, 0.3, 8);
    StandardMoeBlock block(router, registry_.find_router("topk")->plugin, bank, shared, kModel,
                           1e-5);
    sdk::BlockInput input;
    input.hidden = at::randn({kTokens, kModel});
    input.token_ids = at::zeros({kTokens}, at::kLong);
    const sdk::BlockOutput output = block.forward(input);
    const at::Tensor x = rms_norm(input.hidden, 1e-5);
    const sdk::RoutingDecision& d = output.routing[0];
    const at::Tensor expected =
        input.hidden +
        tests::naive_mix(x, d.expert_indices, d.combine_weights, bank->w_in, bank->w_out) +
        tests::naive_swiglu(x, shared->w_in[0], shared->w_out[0]);
    EXPECT_TRUE(at::allclose(output.hidden, expected, 1e-5, 1e-5));
}

TEST_F(TopKBlock, TopKThenSoftmaxAndTheZLossFollowTheirDefinitions) {
    const RegisteredRouter& topk = *registry_.find_router("topk");
    sdk::MoeLayerContext context;
    context.model.d_model = kModel;
    context.model.experts = kExperts;
    context.seed = 3;
    context.init_std = 0.5;
    std::map<std::string, sdk::ParamValue, std::less<>> values;
    for (const auto& spec : topk.component.params.specs()) values[spec.name] = spec.default_value;
    values["selection"] = std::string("topk_softmax");
    values["z_loss_coef"] = 0.25;
    values["balance_coef"] = 0.0;
    auto router = instantiate_router(topk, context, sdk::Params(values));
    sdk::RouterInput input;
    input.hidden = at::randn({kTokens, kModel});
    sdk::UnperturbedSelection unperturbed;
    input.selection = &unperturbed;
    const sdk::RoutingDecision d = router->route(input);
    const at::Tensor logits = at::matmul(input.hidden, router->named_parameters()["weight"].t());
    auto [top_logits, top_i] = logits.topk(2, -1);
    EXPECT_TRUE(at::equal(d.expert_indices, top_i));
    EXPECT_TRUE(at::allclose(d.combine_weights, top_logits.softmax(-1), 1e-6, 1e-6));
    ASSERT_EQ(d.aux_losses.size(), 1u);
    EXPECT_EQ(d.aux_losses[0].first, "z_loss");
    EXPECT_NEAR(d.aux_losses[0].second.item<double>(),
                0.25 * logits.logsumexp(-1).square().mean().item<double>(), 1e-5);
}

TEST_F(TopKBlock, PerturbationRemovesEachTokensTopExpertAndRenormalises) {
    auto router = make_topk(2, true);
    sdk::RouterInput input;
    input.hidden = at::randn({kTokens, kModel});
    sdk::UnperturbedSelection unperturbed;
    input.selection = &unperturbed;
    const sdk::RoutingDecision normal = router->route(input);
    const core::Perturbation disable_top{.kind = core::PerturbationKind::kDisableTop,
                                         .strength = 1};
    core::PerturbedSelection selection(&disable_top, {});
    input.selection = &selection;
    const sdk::RoutingDecision perturbed = router->route(input);
    // The new first choice is the old second choice; the argmax expert never appears.
    const at::Tensor argmax = normal.probs.argmax(-1);
    EXPECT_TRUE(
        at::equal(perturbed.expert_indices.select(1, 0), normal.expert_indices.select(1, 1)));
    EXPECT_FALSE((perturbed.expert_indices == argmax.unsqueeze(1)).any().item<bool>());
    EXPECT_TRUE(at::allclose(perturbed.combine_weights.sum(-1), at::ones({kTokens})));
}

// A router that records what it was given.
class SpyRouter : public sdk::Router {
  public:
    sdk::RoutingDecision route(const sdk::RouterInput& input) override {
        seen_dtype = input.hidden.scalar_type();
        matmul_dtype = at::matmul(input.hidden, at::ones({input.hidden.size(1), 2})).scalar_type();
        sdk::RoutingDecision decision;
        decision.expert_indices = at::zeros({input.hidden.size(0), 1}, at::kLong);
        decision.combine_weights = at::ones({input.hidden.size(0), 1});
        return decision;
    }
    at::ScalarType seen_dtype = at::kByte;
    at::ScalarType matmul_dtype = at::kByte;
};

void set_cpu_autocast(bool enabled) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCPU, enabled);
#else
    at::autocast::set_cpu_enabled(enabled);
#endif
}

TEST(StandardBlock, RoutesInFp32UnderBf16Autocast) {
    auto spy = std::make_shared<SpyRouter>();
    auto bank = std::make_shared<HostExpertBank>(sdk::ExpertBankSpec{"experts", 2, 4, 4, -1},
                                                 DispatchPolicy{}, 0.1, 0.1, 1);
    StandardMoeBlock block(spy, test_plugin(), bank, nullptr, 4, 1e-5);
    sdk::BlockInput input;
    input.hidden = at::randn({3, 4}).to(at::kBFloat16);
    input.token_ids = at::zeros({3}, at::kLong);
    set_cpu_autocast(true);  // CPU autocast defaults to bfloat16
    // Sanity: autocast really is on outside the router.
    const at::ScalarType outside = at::matmul(at::randn({2, 2}), at::randn({2, 2})).scalar_type();
    block.forward(input);
    set_cpu_autocast(false);
    EXPECT_EQ(outside, at::kBFloat16);
    EXPECT_EQ(spy->seen_dtype, at::kFloat);
    EXPECT_EQ(spy->matmul_dtype, at::kFloat);
}

// CPU tensors' checks deferred as CUDA tensors' are, while alive.
struct CpuChecksDeferred {
    explicit CpuChecksDeferred(bool defer) { defer_cpu_checks_for_tests(defer); }
    ~CpuChecksDeferred() { defer_cpu_checks_for_tests(false); }
};

TEST(StandardBlock, MalformedDecisionIsAPluginErrorNamingThePlugin) {
    class BadRouter : public sdk::Router {
      public:
        sdk::RoutingDecision route(const sdk::RouterInput& input) override {
            sdk::RoutingDecision decision;
            decision.expert_indices = at::zeros({input.hidden.size(0) + 1, 1}, at::kLong);
            decision.combine_weights = at::ones({input.hidden.size(0) + 1, 1});
            return decision;
        }
    };
    auto bank = std::make_shared<HostExpertBank>(sdk::ExpertBankSpec{"experts", 2, 4, 4, -1},
                                                 DispatchPolicy{}, 0.1, 0.1, 1);
    StandardMoeBlock block(std::make_shared<BadRouter>(), test_plugin(), bank, nullptr, 4, 1e-5);
    sdk::BlockInput input;
    input.hidden = at::randn({3, 4});
    input.token_ids = at::zeros({3}, at::kLong);
    try {
        block.forward(input);
        FAIL();
    } catch (const PluginError& error) {
        EXPECT_NE(std::string(error.what()).find("plugin 'test'"), std::string::npos);
        EXPECT_NE(std::string(error.what()).find("(tokens=3, slots)"), std::string::npos)
            << error.what();
    }
}

// Every bad field of a decision gets its own message naming the plugin and the field, and nothing
// reads outside the expert weights.
TEST(StandardBlock, ChecksIndexRangeFinitenessAndScalarsOfEveryDecision) {
    using Edit = std::function<void(sdk::RoutingDecision&)>;
    class EditedRouter : public sdk::Router {
      public:
        explicit EditedRouter(Edit edit) : edit_(std::move(edit)) {}
        sdk::RoutingDecision route(const sdk::RouterInput& input) override {
            sdk::RoutingDecision decision;
            decision.expert_indices = at::zeros({input.hidden.size(0), 2}, at::kLong);
            decision.combine_weights = at::full({input.hidden.size(0), 2}, 0.5);
            edit_(decision);
            return decision;
        }

      private:
        Edit edit_;
    };
    const std::vector<std::pair<Edit, std::string>> cases = {
        {[](sdk::RoutingDecision& d) { d.expert_indices[1][1] = 7; },
         "expert_indices must be in [-1, 2) (-1: empty slot), got values from 0 to 7"},
        {[](sdk::RoutingDecision& d) { d.expert_indices[0][0] = -3; },
         "expert_indices must be in [-1, 2) (-1: empty slot), got values from -3 to 0"},
        {[](sdk::RoutingDecision& d) { d.combine_weights[2][0] = std::nan(""); },
         "combine_weights has 1 non-finite value(s) (NaN or infinity) of 6"},
        {[](sdk::RoutingDecision& d) { d.aux_losses.emplace_back("balance", at::ones({8})); },
         "aux_losses['balance'] must be a floating-point scalar (one element), got"},
        {[](sdk::RoutingDecision& d) { d.stats.emplace_back("entropy", at::full({}, INFINITY)); },
         "stats['entropy'] is not finite: inf"},
        // Extensions: only keys this host's SDK defines, with their declared shape.
        {[](sdk::RoutingDecision& d) {
             d.extensions.set(sdk::ExtensionKey<at::Tensor>{"shared_scale"}, at::ones({3}));
         },
         "RoutingDecision extension 'shared_scale' is not defined by this host's SDK " +
             std::string(sdk::kSdkVersion) + " (it defines: token_scale)"},
        {[](sdk::RoutingDecision& d) {
             d.extensions.set(sdk::ExtensionKey<double>{"token_scale"}, 2);
         },
         "RoutingDecision extension 'token_scale' must hold a tensor, got a number"},
        {[](sdk::RoutingDecision& d) {
             d.extensions.set(sdk::decision_extension::kTokenScale, at::ones({5}));
         },
         "extension token_scale must have shape (tokens=3), got"},
    };
    // At once, and read at the end of a forward pass as on CUDA (Note [Deferred checks]): the
    // same words; meanwhile the bank plans out-of-range indices as empty slots.
    for (const bool deferred : {false, true}) {
        for (const auto& [edit, expected] : cases) {
            auto bank = std::make_shared<HostExpertBank>(
                sdk::ExpertBankSpec{"experts", 2, 4, 4, -1}, DispatchPolicy{}, 0.1, 0.1, 1);
            StandardMoeBlock block(std::make_shared<EditedRouter>(edit), test_plugin(), bank,
                                   nullptr, 4, 1e-5);
            sdk::BlockInput input;
            input.hidden = at::randn({3, 4});
            input.token_ids = at::zeros({3}, at::kLong);
            const CpuChecksDeferred defer(deferred);
            DeferredChecks pass;
            try {
                block.forward(input);
                pass.read();
                ADD_FAILURE() << "accepted: " << expected;
            } catch (const PluginError& error) {
                EXPECT_NE(std::string(error.what()).find("plugin 'test'"), std::string::npos);
                EXPECT_NE(std::string(error.what()).find(expected), std::string::npos)
                    << (deferred ? "deferred: " : "") << error.what();
            }
        }
    }
}

// The bank side of Note [Extensions]: the probe key is read (set from an integer literal, which
// converts to the key's double), unknown keys are refused.
TEST(ExpertBank, ReadsItsExtensionKeysAndRefusesUnknownOnes) {
    sdk::ExpertBankSpec spec{"probed", 2, 4, 3, -1};
    spec.extensions.set(sdk::bank_extension::kActivationThreshold, 0);
    HostExpertBank bank(spec, DispatchPolicy{}, 0.3, 0.3, 4);
    const at::Tensor x = at::randn({5, 4});
    bank.run_all(x);
    const std::vector<DispatchRecord> records = bank.take_dispatches();
    ASSERT_EQ(records.size(), 1u);
    const at::Tensor activation = kernels::reference::swiglu_activation(x.unsqueeze(0), bank.w_in);
    EXPECT_EQ(records[0].probed, activation.numel());
    EXPECT_EQ(records[0].probed_active.item<std::int64_t>(),
              (activation.abs() > 0).sum().item<std::int64_t>());

    sdk::ExpertBankSpec unknown{"experts", 2, 4, 3, -1};
    unknown.extensions.set(sdk::ExtensionKey<double>{"dropout"}, 0.1);
    try {
        HostExpertBank refused(unknown, DispatchPolicy{}, 0.3, 0.3, 4);
        ADD_FAILURE() << "an unknown bank extension was accepted";
    } catch (const sdk::Error& error) {
        EXPECT_NE(std::string(error.what())
                      .find("expert bank 'experts': ExpertBankSpec extension 'dropout' is not "
                            "defined by this host's SDK " +
                            std::string(sdk::kSdkVersion) + " (it defines: activation_threshold)"),
                  std::string::npos)
            << error.what();
    }
}

TEST(ExpertBank, RefusesIndicesOutsideItsExperts) {
    HostExpertBank bank(sdk::ExpertBankSpec{"experts", 3, 4, 4, -1}, DispatchPolicy{}, 0.1, 0.1, 1);
    const at::Tensor x = at::randn({2, 4});
    const std::string expected =
        "expert bank 'experts': expert indices must be in [-1, 3) (-1: empty slot), got values "
        "from 0 to 3";
    try {
        bank.mix(x, at::tensor({0, 3}, at::kLong).view({2, 1}), at::ones({2, 1}));
        FAIL();
    } catch (const sdk::Error& error) {
        EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
    }
    // Deferred (Note [Deferred checks]): the out-of-range index is an empty slot until the read,
    // which raises the same words.
    const CpuChecksDeferred defer(true);
    DeferredChecks pass;
    const at::Tensor got =
        bank.mix(x, at::tensor({0, 3}, at::kLong).view({2, 1}), at::ones({2, 1}));
    const at::Tensor as_empty =
        bank.mix(x, at::tensor({0, -1}, at::kLong).view({2, 1}), at::ones({2, 1}));
    EXPECT_TRUE(at::equal(got, as_empty));
    try {
        pass.read();
        FAIL();
    } catch (const sdk::Error& error) {
        EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
    }
}

// Note [Deferred checks], hand-worked: three checks in one pass under two contexts; the read
// raises the first that fails (the second: the first has no violations), through its contexts
// innermost first, and a check that on reflection has nothing to report raises nothing.
TEST(DeferredChecks, RaiseTheFirstFailureThroughItsContextsAtTheRead) {
    const CpuChecksDeferred defer(true);
    const auto count = [](std::int64_t n) { return at::full({}, n, at::kLong); };
    std::vector<std::int64_t> seen;
    {
        DeferredChecks pass;
        const ErrorContext outer(
            [](const sdk::Error& e) { throw PluginError(std::string("outer: ") + e.what()); });
        expect_no_violations(count(0), [](std::int64_t) { throw sdk::Error("never"); });
        {
            const ErrorContext inner(
                [](const sdk::Error& e) { throw sdk::Error(std::string("inner: ") + e.what()); });
            expect_no_violations(count(2), [&](std::int64_t n) {
                seen.push_back(n);
                throw sdk::Error("two bad");
            });
        }
        expect_no_violations(count(5), [](std::int64_t) { throw sdk::Error("later"); });
        try {
            pass.read();
            FAIL();
        } catch (const PluginError& error) {
            EXPECT_EQ(std::string(error.what()), "outer: inner: two bad");
        }
        EXPECT_EQ(seen, std::vector<std::int64_t>{2});
        pass.read();  // what was pending went with the failure
    }
    {
        DeferredChecks pass;
        expect_no_violations(count(1), [](std::int64_t) {});  // nothing to report after all
        EXPECT_NO_THROW(pass.read());
    }
    // A context opened before the pass is the caller's: its own catch translates what leaves
    // the pass, as it would have at once.
    {
        const ErrorContext callers(
            [](const sdk::Error& e) { throw PluginError(std::string("caller: ") + e.what()); });
        DeferredChecks pass;
        expect_no_violations(count(1), [](std::int64_t) { throw sdk::Error("inside"); });
        try {
            pass.read();
            FAIL();
        } catch (const sdk::Error& error) {
            EXPECT_EQ(std::string(error.what()), "inside");
        }
    }
    // Outside a pass, a check runs at once.
    EXPECT_THROW(expect_no_violations(count(1), [](std::int64_t) { throw sdk::Error("now"); }),
                 sdk::Error);
}

}  // namespace
}  // namespace moelab::core

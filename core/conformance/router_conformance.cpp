#include "core/conformance/router_conformance.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <torch/autograd.h>

#include "core/moe/moe_layer.h"
#include "core/moe/perturbation.h"
#include "core/plugin/plugin_error.h"
#include "moelab/sdk/batch_reduction.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

namespace {

// The kit's model: small enough to run every check in seconds, with enough experts that a token
// cannot reach all of them.
constexpr std::int64_t kModel = 32, kExperts = 8, kExpertFf = 16, kDenseFf = 64, kVocab = 64;

struct Layer {
    std::unique_ptr<LayerHostServices> host;
    std::shared_ptr<MoeLayer> moe;
};

sdk::ModelShape kit_shape() {
    sdk::ModelShape shape;
    shape.d_model = kModel;
    shape.layers = 2;
    shape.vocab_size = kVocab;
    shape.heads = 4;
    shape.kv_heads = 4;
    shape.head_dim = kModel / 4;
    shape.max_seq_len = 64;
    shape.d_ff = kDenseFf;
    shape.experts = kExperts;
    shape.d_ff_expert = kExpertFf;
    return shape;
}

sdk::Params with_option(const sdk::ParamSchema& schema, const std::string& name,
                        sdk::ParamValue value) {
    if (name.empty()) return default_params(schema);
    std::map<std::string, sdk::ParamValue, std::less<>> values = default_params(schema).values();
    values[name] = std::move(value);
    return sdk::Params(std::move(values));
}

Layer build(const RegisteredRouter& router, const sdk::Params& params, std::uint64_t seed) {
    Layer layer;
    // Token id v occurs v + 1 times: frequent and rare ids for routers that care (MaskMoE, Hash).
    const at::Tensor counts = at::arange(1, kVocab + 1, at::kLong);
    layer.host = std::make_unique<LayerHostServices>(DispatchPolicy{}, 0.1, 0.05, seed * 31 + 7,
                                                     [counts] { return counts; });
    sdk::MoeLayerContext context;
    context.model = kit_shape();
    context.layer_index = 1;
    context.moe_layer_index = 0;
    context.moe_layers = 2;
    context.seed = seed;
    context.model_seed = seed + 1000;
    context.init_std = 0.1;
    context.host = layer.host.get();
    layer.moe = make_moe_layer(router, params, context, *layer.host);
    return layer;
}

sdk::BlockOutput forward(Layer& layer, const at::Tensor& hidden, const at::Tensor& ids,
                         bool training, const Perturbation* perturbation = nullptr,
                         const sdk::BatchReduction* batch = nullptr) {
    layer.moe->train(training);
    sdk::BlockInput input;
    input.hidden = hidden;
    input.token_ids = ids;
    input.training = training;
    input.batch = batch;
    return layer.moe->forward(input, nullptr, perturbation);
}

at::Tensor hidden_states(std::int64_t tokens, std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed);
    return at::randn({tokens, kModel}, generator, at::kFloat);
}

at::Tensor token_ids(std::int64_t tokens, std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed ^ 0x5eedULL);
    return at::randint(kVocab, {tokens}, generator, at::TensorOptions().dtype(at::kLong));
}

// Parameters (not buffers) that should learn, with their gradients after one backward pass.
std::vector<std::string> parameters_without_gradient(Layer& layer, std::int64_t tokens) {
    const at::Tensor x = hidden_states(tokens, 3);
    const at::Tensor ids = token_ids(tokens, 3);
    const sdk::BlockOutput out = forward(layer, x, ids, /*training=*/true);
    at::Tensor loss = (out.hidden * hidden_states(tokens, 4)).sum();
    for (const auto& [name, aux] : out.aux_losses) loss = loss + aux;
    for (auto& item : layer.moe->named_parameters()) item.value().mutable_grad() = at::Tensor();
    loss.backward();
    std::vector<std::string> missing;
    for (const auto& item : layer.moe->named_parameters()) {
        if (!item.value().requires_grad()) continue;
        const at::Tensor& grad = item.value().grad();
        if (!grad.defined() || grad.abs().sum().item<double>() == 0.0)
            missing.push_back(item.key());
    }
    return missing;
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
    return out;
}

ConformanceCheck check_decisions(const sdk::BlockOutput& out, std::int64_t tokens) {
    if (out.routing.empty()) return fail("the block reported no routing decision");
    for (std::size_t i = 0; i < out.routing.size(); ++i) {
        const sdk::RoutingDecision& d = out.routing[i];
        // Shapes, dtypes, index range, finiteness and scalars are checked by the host on every
        // forward (MoeLayer::forward); what remains is the meaning of empty slots.
        const at::Tensor empty_weight = d.combine_weights.masked_select(d.expert_indices < 0);
        if (empty_weight.numel() > 0 && (empty_weight != 0).any().item<bool>()) {
            return fail(
                fmt::format("routing[{}]: an empty slot (index -1) has a non-zero "
                            "combine weight",
                            i));
        }
        if (d.probs.defined() && d.probs.size(1) > 0 &&
            (d.expert_indices >= d.probs.size(1)).any().item<bool>()) {
            return fail(fmt::format("routing[{}]: an index is beyond probs' {} experts", i,
                                    d.probs.size(1)));
        }
    }
    return pass(fmt::format("{} tokens, {} decision(s) per forward", tokens, out.routing.size()));
}

// One process of two that share a batch, played in one process: a first pass records what each of
// the process's BatchReduction::sum calls sends; a second pass answers every call with its own
// value plus the other process's recorded one (the calls come in the same order in both).
class PlayedHalf final : public sdk::BatchReduction {
  public:
    explicit PlayedHalf(const std::vector<at::Tensor>* other = nullptr) : other_(other) {}
    at::Tensor sum(const at::Tensor& local) const override {
        const at::Tensor mine = local.detach().clone();
        if (other_ == nullptr) {
            sent_.push_back(mine);
            return mine;
        }
        if (call_ >= other_->size() || (*other_)[call_].sizes() != mine.sizes()) {
            throw sdk::Error("the two halves of a batch made different BatchReduction::sum calls");
        }
        return mine + (*other_)[call_++];
    }
    int parts() const override { return 2; }
    const std::vector<at::Tensor>& sent() const { return sent_; }

  private:
    const std::vector<at::Tensor>* other_;
    mutable std::vector<at::Tensor> sent_;
    mutable std::size_t call_ = 0;
};

// The auxiliary losses of a batch split over two processes, averaged as the host averages the
// processes' losses, against the whole batch's (feature::kSplitBatch).
ConformanceCheck check_split_batch(const RegisteredRouter& router, const sdk::Params& params) {
    constexpr std::int64_t kTokens = 64, kHalf = kTokens / 2;
    const at::Tensor x = hidden_states(kTokens, 9), ids = token_ids(kTokens, 9);
    Layer layer = build(router, params, 11);
    const sdk::BlockOutput whole = forward(layer, x, ids, true);
    if (whole.aux_losses.empty()) return pass("no auxiliary losses: nothing depends on the batch");
    auto half = [&](int part, const PlayedHalf& batch) {
        return forward(layer, x.narrow(0, part * kHalf, kHalf), ids.narrow(0, part * kHalf, kHalf),
                       true, nullptr, &batch);
    };
    PlayedHalf first_pass_a, first_pass_b;
    half(0, first_pass_a);
    half(1, first_pass_b);
    const PlayedHalf a(&first_pass_b.sent()), b(&first_pass_a.sent());
    const sdk::BlockOutput out_a = half(0, a), out_b = half(1, b);
    for (std::size_t i = 0; i < whole.aux_losses.size(); ++i) {
        const auto& [name, value] = whole.aux_losses[i];
        const double expected = value.item<double>();
        const double split = 0.5 * (out_a.aux_losses.at(i).second.item<double>() +
                                    out_b.aux_losses.at(i).second.item<double>());
        if (std::abs(split - expected) > 1e-4 * std::max(1.0, std::abs(expected))) {
            return fail(fmt::format(
                "aux_losses['{}'] of a batch split over 2 processes averages to {:.6g}, the whole "
                "batch gives {:.6g}: batch-level counts must go through input.batch "
                "(sdk::switch_balance_loss(..., input.batch))",
                name, split, expected));
        }
    }
    return pass(fmt::format("{} auxiliary loss(es) of a split batch equal the whole batch's",
                            whole.aux_losses.size()));
}

}  // namespace

ConformanceReport test_router_component(const RegisteredRouter& router) {
    ConformanceReport report;
    const sdk::RouterComponent& component = router.component;
    report.component = describe_component("router", component.name, *router.plugin);
    const sdk::Params defaults = with_option(component.params, "", {});

    if (component.supports) {
        sdk::CapabilityQuery query;
        query.model = kit_shape();
        const sdk::Support support = call_plugin(*router.plugin, "capability query", [&] {
            return component.supports(query, defaults);
        });
        if (!support.ok) {
            report.checks.push_back(
                {"kit model supported", CheckOutcome::kFail,
                 "refuses the kit's model (d_model 32, 8 experts of 16): " + support.reason});
            return report;
        }
    }

    report.checks.push_back(run_check("decision contract", [&] {
        Layer layer = build(router, defaults, 11);
        return check_decisions(forward(layer, hidden_states(64, 1), token_ids(64, 1), false), 64);
    }));

    report.checks.push_back(run_check("gradients reach every parameter", [&] {
        Layer layer = build(router, defaults, 11);
        const auto missing = parameters_without_gradient(layer, 64);
        if (!missing.empty()) return fail("no gradient from the loss: " + joined(missing));
        return pass(fmt::format("{} parameters", layer.moe->named_parameters().size()));
    }));

    if (const sdk::ParamSpec* k = component.params.find("k");
        k != nullptr && k->type == sdk::ParamType::kInt) {
        report.checks.push_back(run_check("gradients at k = 1", [&] {
            Layer layer = build(router, with_option(component.params, "k", std::int64_t{1}), 11);
            const auto missing = parameters_without_gradient(layer, 64);
            if (!missing.empty()) {
                return fail(
                    "no gradient at k = 1 (a weight renormalised to p / p = 1 is a "
                    "constant): " +
                    joined(missing));
            }
            return pass("every parameter learns");
        }));
    }

    report.checks.push_back(run_check("determinism under a seed", [&] {
        Layer a = build(router, defaults, 21);
        Layer b = build(router, defaults, 21);
        const at::Tensor x = hidden_states(48, 5), ids = token_ids(48, 5);
        const at::Tensor first = forward(a, x, ids, false).hidden;
        if (!at::equal(first, forward(b, x, ids, false).hidden)) {
            return fail(
                "two layers built with the same seed give different outputs (draw "
                "randomness from MoeLayerContext::seed, not the global generator)");
        }
        if (!at::equal(first, forward(a, x, ids, false).hidden)) {
            return fail("the same layer gives different outputs for the same input");
        }
        return pass("same seed, same output");
    }));

    report.checks.push_back(run_check("experts without tokens", [&] {
        Layer layer = build(router, defaults, 11);
        const at::Tensor x = hidden_states(2, 6).requires_grad_(true);
        const sdk::BlockOutput out = forward(layer, x, token_ids(2, 6), true);
        out.hidden.sum().backward();
        if (!out.hidden.isfinite().all().item<bool>() || !x.grad().isfinite().all().item<bool>()) {
            return fail("2 tokens over 8 experts give non-finite outputs or gradients");
        }
        return pass("2 tokens, 8 experts: finite output and gradients");
    }));

    report.checks.push_back(run_check("batches of 1 and 4096 tokens", [&] {
        Layer layer = build(router, defaults, 11);
        for (const std::int64_t tokens : {std::int64_t{1}, std::int64_t{4096}}) {
            const sdk::BlockOutput out =
                forward(layer, hidden_states(tokens, 7), token_ids(tokens, 7), false);
            if (out.hidden.size(0) != tokens || !out.hidden.isfinite().all().item<bool>()) {
                return fail(fmt::format("{} token(s): wrong shape or non-finite output", tokens));
            }
        }
        return pass("shapes and values as expected");
    }));

    auto lists = [&](std::string_view feature) {
        return std::find(component.features.begin(), component.features.end(), feature) !=
               component.features.end();
    };
    if (lists(sdk::feature::kSplitBatch)) {
        report.checks.push_back(run_check("a batch split over processes",
                                          [&] { return check_split_batch(router, defaults); }));
    }
    if (lists(sdk::feature::kShardedExperts)) {
        // A process may hold none of an evaluation batch's rows and still serve its experts.
        report.checks.push_back(run_check("a call without tokens", [&] {
            Layer layer = build(router, defaults, 11);
            const sdk::BlockOutput out =
                forward(layer, hidden_states(0, 10), token_ids(0, 10), false);
            if (out.hidden.size(0) != 0) return fail("0 tokens in, a non-empty output");
            return pass("0 tokens: an empty output and finite losses");
        }));
    }

    report.checks.push_back(run_check("fp32 routing under bf16 input", [&] {
        Layer layer = build(router, defaults, 11);
        const sdk::BlockOutput out =
            forward(layer, hidden_states(32, 8).to(at::kBFloat16), token_ids(32, 8), false);
        if (out.hidden.scalar_type() != at::kBFloat16) {
            return fail(fmt::format("the output stream is {}, expected the input's bfloat16",
                                    c10::toString(out.hidden.scalar_type())));
        }
        for (const sdk::RoutingDecision& d : out.routing) {
            if (d.combine_weights.scalar_type() != at::kFloat ||
                (d.probs.defined() && d.probs.scalar_type() != at::kFloat)) {
                return fail(
                    "combine weights or probabilities are not float32 with bfloat16 "
                    "input (Note [fp32 routing])");
            }
        }
        return pass("decisions in float32, stream in bfloat16");
    }));

    report.checks.push_back(run_check("checkpoint round trip", [&] {
        Layer a = build(router, defaults, 31);
        Layer b = build(router, defaults, 32);
        std::map<std::string, at::Tensor> saved;
        for (const auto& item : a.moe->named_parameters()) saved[item.key()] = item.value();
        for (const auto& item : a.moe->named_buffers()) saved[item.key()] = item.value();
        {
            torch::NoGradGuard no_grad;
            std::size_t restored = 0;
            for (auto& item : b.moe->named_parameters()) {
                item.value().copy_(saved.at(item.key()));
                ++restored;
            }
            for (auto& item : b.moe->named_buffers()) {
                item.value().copy_(saved.at(item.key()));
                ++restored;
            }
            if (restored != saved.size()) return fail("the two layers hold different tensors");
        }
        const at::Tensor x = hidden_states(48, 9), ids = token_ids(48, 9);
        if (!at::equal(forward(a, x, ids, false).hidden, forward(b, x, ids, false).hidden)) {
            return fail(
                "a layer restored from another's parameters and buffers computes "
                "something else: state outside register_parameter/register_buffer is "
                "not saved in checkpoints");
        }
        return pass(fmt::format("{} tensors", saved.size()));
    }));

    const auto& features = component.features;
    std::size_t listed = 0;
    for (const std::string& kind_name : perturbation_kind_names()) {
        Perturbation perturbation;
        perturbation.kind = *parse_perturbation_kind(kind_name);
        const std::string feature(perturbation_feature(perturbation.kind));
        if (std::find(features.begin(), features.end(), feature) == features.end()) continue;
        ++listed;
        perturbation.strength = perturbation.kind == PerturbationKind::kDisableTop   ? 1.0
                                : perturbation.kind == PerturbationKind::kLogitNoise ? 1.0
                                                                                     : 0.5;
        report.checks.push_back(run_check("perturbation " + kind_name, [&] {
            Layer layer = build(router, defaults, 11);
            const at::Tensor x = hidden_states(64, 12), ids = token_ids(64, 12);
            const at::Tensor plain = forward(layer, x, ids, false).hidden;
            // The host's own check runs inside forward(): every router handed over its scores
            // and no disabled expert was chosen.
            const at::Tensor perturbed = forward(layer, x, ids, false, &perturbation).hidden;
            if (at::equal(plain, perturbed)) {
                return fail(
                    "the output did not change: the router does not choose from the "
                    "scores SelectionControl returns");
            }
            return pass("applied through the selection control, contract kept");
        }));
    }
    if (listed == 0) {
        report.checks.push_back(
            {"perturbations", CheckOutcome::kInfo,
             "lists none: every robustness measurement of this router will be n/a (Note "
             "[Selection contract] in sdk/README.md)"});
    }

    report.checks.push_back(run_check("throughput", [&] {
        Layer layer = build(router, defaults, 11);
        const at::Tensor x = hidden_states(4096, 13), ids = token_ids(4096, 13);
        torch::NoGradGuard no_grad;
        forward(layer, x, ids, false);  // warm-up
        const auto start = std::chrono::steady_clock::now();
        constexpr int kRounds = 5;
        for (int i = 0; i < kRounds; ++i) forward(layer, x, ids, false);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ConformanceCheck info;
        info.outcome = CheckOutcome::kInfo;
        info.detail = fmt::format(
            "{:.0f} tokens/s through the whole MoE layer (d_model 32, 8 "
            "experts of 16, CPU, inference)",
            kRounds * 4096 / seconds);
        return info;
    }));
    return report;
}

}  // namespace moelab::core

#include "core/moe/standard_block.h"

#include <fmt/format.h>

#include "core/moe/extension_check.h"
#include "core/plugin/deferred_checks.h"
#include "core/plugin/plugin_error.h"
#include "core/system/printable.h"
#include "core/system/profile_scope.h"
#include "core/system/tensor_text.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/no_autocast.h"

namespace moelab::core {

void check_routing_decision(sdk::RoutingDecision& decision, std::int64_t tokens,
                            std::int64_t expert_count, const std::vector<at::Tensor>& upstream) {
    const at::Tensor& indices = decision.expert_indices;
    const at::Tensor& weights = decision.combine_weights;
    if (!indices.defined() || indices.dim() != 2 || indices.size(0) != tokens ||
        indices.scalar_type() != at::kLong) {
        throw sdk::Error(fmt::format(
            "expert_indices must be an int64 tensor of shape (tokens={}, slots), got {}", tokens,
            tensor_text(indices)));
    }
    if (!weights.defined() || weights.sizes() != indices.sizes() ||
        !at::isFloatingType(weights.scalar_type())) {
        throw sdk::Error(fmt::format(
            "combine_weights must be a floating tensor shaped like expert_indices {}, got {}",
            shape_text(indices.sizes()), tensor_text(weights)));
    }
    auto check_per_expert = [&](const at::Tensor& t, const char* name) {
        if (!t.defined()) return;
        if (t.dim() != 2 || t.size(0) != tokens ||
            (expert_count > 0 && t.size(1) != expert_count)) {
            throw sdk::Error(fmt::format("{} must have shape (tokens={}, experts={}), got {}", name,
                                         tokens, expert_count, tensor_text(t)));
        }
    };
    check_per_expert(decision.probs, "probs");
    check_per_expert(decision.active_mask, "active_mask");
    auto check_per_token = [&](const at::Tensor& t, const char* name) {
        if (t.defined() && (t.dim() != 1 || t.size(0) != tokens)) {
            throw sdk::Error(fmt::format("{} must have shape (tokens={}), got {}", name, tokens,
                                         tensor_text(t)));
        }
    };
    check_extensions(decision.extensions, "RoutingDecision",
                     {known(sdk::decision_extension::kTokenScale)});
    const at::Tensor* token_scale = decision.extensions.find(sdk::decision_extension::kTokenScale);
    if (token_scale != nullptr) check_per_token(*token_scale, "extension token_scale");
    if (expert_count > 0 && indices.numel() > 0) {
        const at::Tensor outside = (indices < -1).logical_or(indices >= expert_count);
        expect_no_violations(outside.sum(), [indices, expert_count](std::int64_t) {
            const auto [low, high] = at::aminmax(indices);
            throw sdk::Error(fmt::format(
                "expert_indices must be in [-1, {}) (-1: empty slot), got values from {} to {}",
                expert_count, low.item<std::int64_t>(), high.item<std::int64_t>()));
        });
        // Until the deferred check is read, nothing may index with them (Note [Deferred checks]).
        if (checks_deferred_for(indices)) {
            decision.expert_indices =
                at::where(outside, at::full({}, -1, indices.options()), indices);
        }
    }
    auto check_finite = [&upstream](const at::Tensor& t, const char* name) {
        if (!t.defined() || t.numel() == 0 || !at::isFloatingType(t.scalar_type())) return;
        expect_no_violations(
            t.detach().isfinite().logical_not().sum(), [t, name, upstream](std::int64_t bad) {
                // Only on the failure path: is the input or a parameter to blame?
                if (!all_finite(upstream)) return;
                throw sdk::Error(fmt::format(
                    "{} has {} non-finite value(s) (NaN or infinity) of {}", name, bad, t.numel()));
            });
    };
    check_finite(weights, "combine_weights");
    check_finite(decision.probs, "probs");
    if (token_scale != nullptr) check_finite(*token_scale, "extension token_scale");
    check_named_scalars(decision.aux_losses, "aux_losses", upstream);
    check_named_scalars(decision.stats, "stats", upstream);
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
    for (const at::Tensor& t : tensors) {
        if (t.defined() && at::isFloatingType(t.scalar_type()) &&
            !t.detach().isfinite().all().item<bool>()) {
            return false;
        }
    }
    return true;
}

void check_named_scalars(const sdk::NamedScalars& scalars, const char* field,
                         const std::vector<at::Tensor>& upstream) {
    for (const auto& [name, value] : scalars) {
        if (name.empty()) throw sdk::Error(fmt::format("{}: an entry has an empty name", field));
        if (!value.defined() || value.numel() != 1 || !at::isFloatingType(value.scalar_type())) {
            throw sdk::Error(
                fmt::format("{}['{}'] must be a floating-point scalar (one element), "
                            "got {}",
                            field, printable(name, 80), tensor_text(value)));
        }
        expect_no_violations(
            value.detach().isfinite().logical_not().sum(),
            [field, name = name, value, upstream](std::int64_t) {
                if (!all_finite(upstream)) return;
                throw sdk::Error(fmt::format("{}['{}'] is not finite: {}", field,
                                             printable(name, 80), value.detach().item<double>()));
            });
    }
}

StandardMoeBlock::StandardMoeBlock(std::shared_ptr<sdk::Router> router,
                                   std::shared_ptr<const PluginInfo> router_plugin,
                                   std::shared_ptr<sdk::ExpertBank> experts,
                                   std::shared_ptr<sdk::ExpertBank> shared, std::int64_t d_model,
                                   double norm_eps, std::optional<SharedGate> shared_gate)
    : router_(std::move(router)),
      router_plugin_(std::move(router_plugin)),
      experts_(std::move(experts)),
      shared_(std::move(shared)) {
    norm_ = register_module("norm", std::make_shared<sdk::RmsNorm>(d_model, norm_eps));
    register_module("router", router_);
    register_module("experts", experts_);
    if (shared_) register_module("shared", shared_);
    if (shared_gate) {
        if (!shared_) throw sdk::Error("a shared gate needs shared experts ([moe] shared_experts)");
        at::Generator generator = sdk::make_generator(shared_gate->seed);
        shared_gate_weight_ =
            register_parameter("shared_gate_weight",
                               sdk::normal_weight({2, d_model}, shared_gate->init_std, generator));
        shared_gate_bias_ = register_parameter("shared_gate_bias", at::zeros({2}));
    }
}

sdk::BlockOutput StandardMoeBlock::forward(const sdk::BlockInput& input) {
    const at::Tensor x = [&] {
        ProfileScope scope(OpFamily::kNormsElementwise);
        return norm_->forward(input.hidden);  // (tokens, d_model)
    }();
    sdk::RoutingDecision decision;
    at::Tensor mixing;  // (tokens, 2) float32, with a shared gate
    {
        // Note [fp32 routing]: routers see fp32 input with autocast off, so logits, softmax or
        // sigmoid and top-k selection are computed in fp32 whatever the model's dtype.
        sdk::NoAutocast fp32_routing;
        sdk::RouterInput router_input;
        router_input.hidden = x.to(at::kFloat);
        if (shared_gate_weight_.defined()) {
            mixing =
                at::linear(router_input.hidden, shared_gate_weight_, shared_gate_bias_).softmax(-1);
        }
        router_input.token_ids = input.token_ids;
        router_input.training = input.training;
        router_input.step = input.step;
        sdk::UnperturbedSelection unperturbed;  // for callers outside the host's MoE layer
        router_input.selection = input.selection != nullptr ? input.selection : &unperturbed;
        const sdk::WholeBatch whole;
        router_input.batch = input.batch != nullptr ? input.batch : &whole;
        router_input.sequence_length = input.sequence_length;
        router_input.micro_batch = input.micro_batch;
        router_input.micro_batches = input.micro_batches;
        if (replacement_) {
            decision = std::move(*replacement_);
            replacement_.reset();
        } else {
            ProfileScope scope(OpFamily::kRouter);
            decision = call_plugin(*router_plugin_, "routing",
                                   [&] { return router_->route(router_input); });
        }
    }
    {
        const auto malformed = [plugin = router_plugin_](const sdk::Error& error) {
            throw PluginError(fmt::format("{}: routing returned a malformed decision: {}",
                                          describe_plugin(*plugin), error.what()));
        };
        const ErrorContext context(malformed);
        try {
            std::vector<at::Tensor> upstream = router_->parameters();
            upstream.push_back(input.hidden);
            check_routing_decision(decision, x.size(0), experts_->spec().experts, upstream);
        } catch (const sdk::Error& error) {
            malformed(error);
        }
    }
    at::Tensor mixed = experts_->mix(x, decision.expert_indices, decision.combine_weights);
    if (const at::Tensor* scale = decision.extensions.find(sdk::decision_extension::kTokenScale)) {
        mixed = mixed * scale->to(mixed.scalar_type()).unsqueeze(1);
    }
    if (shared_) {
        at::Tensor shared = shared_->run_all(x).squeeze(0).to(mixed.scalar_type());
        if (mixing.defined()) {
            mixed = mixed * mixing.select(1, 0).to(mixed.scalar_type()).unsqueeze(1) +
                    shared * mixing.select(1, 1).to(mixed.scalar_type()).unsqueeze(1);
        } else {
            mixed = mixed + shared;
        }
    }

    sdk::BlockOutput output;
    output.hidden = input.hidden + mixed.to(input.hidden.scalar_type());
    output.aux_losses = std::move(decision.aux_losses);
    output.stats = std::move(decision.stats);
    decision.aux_losses.clear();
    decision.stats.clear();
    output.routing.push_back(std::move(decision));
    return output;
}

}  // namespace moelab::core

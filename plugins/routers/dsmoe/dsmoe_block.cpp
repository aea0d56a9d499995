#include "dsmoe_block.h"

#include <algorithm>

#include "moelab/sdk/init.h"
#include "moelab/sdk/no_autocast.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::dsmoe {

DsMoeOptions DsMoeOptions::from(const sdk::Params& params) {
    DsMoeOptions options;
    options.tau = params.get_float("tau");
    options.rescale = params.get_bool("rescale");
    options.sparsity_coef = params.get_float("sparsity_coef");
    options.sparsity_ste = params.get_string("sparsity_loss") == "S";
    options.force_open = params.get_bool("force_open");
    return options;
}

DsMoeBlock::DsMoeBlock(const sdk::MoeLayerContext& context, const DsMoeOptions& options)
    : options_(options),
      expert_count_(context.model.experts),
      moe_layer_count_(std::max(1, context.moe_layers)) {
    const std::int64_t d_model = context.model.d_model;
    norm_ =
        register_module("norm", std::make_shared<sdk::RmsNorm>(d_model, context.model.norm_eps));
    experts_ = register_module(
        "experts", context.host->make_expert_bank(
                       {"experts", expert_count_, d_model, context.model.d_ff_expert, 0.0}));
    at::Generator generator = sdk::make_generator(context.seed);
    gate_ = register_parameter(
        "gate", sdk::normal_weight({expert_count_, d_model}, context.init_std, generator));
}

sdk::BlockOutput DsMoeBlock::forward(const sdk::BlockInput& input) {
    const at::Tensor x = norm_->forward(input.hidden);  // (tokens, d_model), compute dtype
    const std::int64_t tokens = x.size(0);
    at::Tensor q, active, gated, straight_through, active_count;
    {
        // Note [fp32 routing]: gates, threshold and the STE in fp32.
        sdk::NoAutocast fp32_routing;
        q = at::sigmoid(x.to(at::kFloat).matmul(gate_.t()));  // (tokens, experts)
        // The gates the threshold reads; equal to q outside a host perturbation.
        const at::Tensor s = input.selection->selectable_scores(q, sdk::ScoreKind::kSigmoid, 0, {});
        // force_open (Eq. 20 ablation) opens every expert the selection control left available.
        active = options_.force_open ? s > 0 : s > options_.tau;
        gated = options_.force_open ? active.to(at::kFloat) : s * active;                  // G(q)
        straight_through = options_.force_open ? gated : gated.detach() + s - s.detach();  // S(q)
        active_count = active.sum(1).to(at::kFloat);  // a constant (Eq. 8)
    }

    at::Tensor mixed;
    const at::Tensor all_experts = at::arange(expert_count_, x.options().dtype(at::kLong));
    const at::Tensor indices = at::where(active, all_experts.expand({tokens, expert_count_}),
                                         at::full({}, -1, all_experts.options()));
    if (input.training) {
        // Dense compute: (experts, tokens, d_model) weighted by S(q).
        const at::Tensor outputs = experts_->run_all(x);
        mixed = at::einsum("te,etd->td", {straight_through.to(outputs.scalar_type()), outputs});
    } else {
        // Sparse compute: only active (token, expert) pairs run.
        mixed = experts_->mix(x, indices, gated);
    }
    at::Tensor token_scale;
    if (options_.rescale) {
        token_scale = static_cast<double>(expert_count_) / active_count.clamp_min(1.0);
        mixed = mixed * token_scale.to(mixed.scalar_type()).unsqueeze(1);
    }

    sdk::BlockOutput output;
    output.hidden = input.hidden + mixed.to(input.hidden.scalar_type());
    if (options_.sparsity_coef > 0) {
        const at::Tensor penalised = options_.sparsity_ste ? straight_through : gated;
        // (1 / (L N)) sum over layers and experts, mean over tokens; this layer's share.
        output.aux_losses.emplace_back("sparsity",
                                       options_.sparsity_coef * penalised.sum(1).mean() /
                                           static_cast<double>(expert_count_ * moe_layer_count_));
    }
    output.stats.emplace_back("active_experts_mean", active_count.mean().detach());

    sdk::RoutingDecision decision;
    decision.expert_indices = indices;
    decision.combine_weights = gated.detach();
    decision.probs = q.detach();
    decision.active_mask = active;
    if (token_scale.defined()) {
        decision.extensions.set(sdk::decision_extension::kTokenScale, token_scale.detach());
    }
    output.routing.push_back(std::move(decision));
    return output;
}

}  // namespace moelab::plugins::dsmoe

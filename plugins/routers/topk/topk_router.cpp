#include "topk_router.h"

#include <tuple>

#include "moelab/sdk/init.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::topk {

TopKOptions TopKOptions::from(const sdk::Params& params) {
    TopKOptions options;
    options.k = params.get_int("k");
    options.softmax_first = params.get_string("selection") == "softmax_topk";
    options.renormalize = params.get_bool("renormalize");
    options.balance_coef = params.get_float("balance_coef");
    options.sequence_balance_coef = params.get_float("sequence_balance_coef");
    options.global_balance_coef = params.get_float("global_balance_coef");
    options.z_loss_coef = params.get_float("z_loss_coef");
    options.jitter = params.get_float("jitter");
    return options;
}

TopKRouter::TopKRouter(const sdk::MoeLayerContext& context, const TopKOptions& options)
    : options_(options),
      expert_count_(context.model.experts),
      balance_(expert_count_,
               {options.balance_coef, options.sequence_balance_coef, options.global_balance_coef}) {
    at::Generator generator = sdk::make_generator(context.seed);
    weight_ = register_parameter(
        "weight",
        sdk::normal_weight({expert_count_, context.model.d_model}, context.init_std, generator));
}

sdk::RoutingDecision TopKRouter::route(const sdk::RouterInput& input) {
    at::Tensor hidden = input.hidden;  // (tokens, d_model) float32
    if (input.training && options_.jitter > 0) {
        hidden =
            hidden * at::empty_like(hidden).uniform_(1.0 - options_.jitter, 1.0 + options_.jitter);
    }
    const at::Tensor logits = hidden.matmul(weight_.t());  // (tokens, experts)

    sdk::RoutingDecision decision;
    decision.probs = logits.softmax(-1);  // (tokens, experts), clean: for the losses
    const at::Tensor scores =
        input.selection->selectable_scores(decision.probs, sdk::ScoreKind::kSoftmax, 0, {});
    if (options_.softmax_first) {
        std::tie(decision.expert_indices, decision.combine_weights) =
            sdk::select_top_k(scores, options_.k, options_.renormalize);
    } else {
        // Mixtral: softmax over the k largest logits, which is the k largest probabilities
        // divided by their sum (the per-token constant of log-softmax cancels). With k = 1 the
        // weight is the constant 1 by definition, and the router learns only through its losses.
        auto [indices, top] = sdk::select_top_k(scores, options_.k, /*renormalize=*/false);
        decision.expert_indices = indices;
        decision.combine_weights = top / top.sum(-1, /*keepdim=*/true).clamp_min(1e-9);
    }

    balance_.add(decision, input);
    if (options_.z_loss_coef > 0) {
        decision.aux_losses.emplace_back("z_loss",
                                         options_.z_loss_coef * sdk::router_z_loss(logits));
    }
    return decision;
}

}  // namespace moelab::plugins::topk

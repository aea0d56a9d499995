#include "deepseek_router.h"

#include <limits>

#include <ATen/core/grad_mode.h>

#include "moelab/sdk/init.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::deepseek {

DeepSeekOptions DeepSeekOptions::from(const sdk::Params& params) {
    DeepSeekOptions options;
    options.k = params.get_int("k");
    options.sigmoid = params.get_string("score") == "sigmoid";
    options.normalize = params.get_bool("normalize");
    options.route_scale = params.get_float("route_scale");
    options.groups = params.get_int("groups");
    options.topk_groups = params.get_int("topk_groups");
    options.bias_rate = params.get_float("bias_rate");
    options.balance_coef = params.get_float("balance_coef");
    options.sequence_balance_coef = params.get_float("sequence_balance_coef");
    options.global_balance_coef = params.get_float("global_balance_coef");
    return options;
}

DeepSeekRouter::DeepSeekRouter(const sdk::MoeLayerContext& context, const DeepSeekOptions& options)
    : options_(options),
      expert_count_(context.model.experts),
      balance_(expert_count_,
               {options.balance_coef, options.sequence_balance_coef, options.global_balance_coef}) {
    at::Generator generator = sdk::make_generator(context.seed);
    weight_ = register_parameter(
        "weight",
        sdk::normal_weight({expert_count_, context.model.d_model}, context.init_std, generator));
    expert_bias_ = register_buffer("expert_bias", at::zeros({expert_count_}));
    pending_load_ = register_buffer("pending_load", at::zeros({expert_count_}));
    pending_step_ = register_buffer("pending_step", at::full({}, -1, at::kLong));
}

at::Tensor DeepSeekRouter::selection_keys(const at::Tensor& selectable) const {
    const double minus_infinity = -std::numeric_limits<double>::infinity();
    const at::Tensor keys =
        (selectable + expert_bias_).masked_fill(selectable <= 0, minus_infinity);
    if (options_.groups <= 1 || options_.topk_groups >= options_.groups) return keys;
    // A group's score is the sum of its two largest keys (its largest alone for groups of one
    // expert), as DeepSeek-V3 ranks them; the token keeps its topk_groups best groups.
    // Interpretation: an expert the host made unselectable (a perturbation) counts in its group's
    // score as a key below every selectable one of the token, so that such a group ranks by what
    // it still offers, after the groups that are whole, and an empty group ranks last.
    const at::Tensor finite = keys.isfinite();
    const at::Tensor floor =
        keys.masked_fill(finite.logical_not(), std::numeric_limits<double>::infinity())
            .amin(-1, /*keepdim=*/true) -
        1.0;
    const at::Tensor scoring = at::where(finite, keys, floor);
    const std::int64_t tokens = keys.size(0);
    const std::int64_t per_group = expert_count_ / options_.groups;
    const at::Tensor group_scores = std::get<0>(scoring.view({tokens, options_.groups, per_group})
                                                    .topk(std::min<std::int64_t>(2, per_group), -1))
                                        .sum(-1);
    const at::Tensor best = std::get<1>(group_scores.topk(options_.topk_groups, -1));
    const at::Tensor kept = at::zeros({tokens, options_.groups}, keys.options().dtype(at::kBool))
                                .scatter_(1, best, true)
                                .unsqueeze(-1)
                                .expand({tokens, options_.groups, per_group})
                                .reshape({tokens, expert_count_});
    return keys.masked_fill(kept.logical_not(), minus_infinity);
}

sdk::RoutingDecision DeepSeekRouter::route(const sdk::RouterInput& input) {
    const at::Tensor logits = input.hidden.matmul(weight_.t());  // (tokens, experts)
    const at::Tensor affinity = options_.sigmoid ? logits.sigmoid() : logits.softmax(-1);
    const at::Tensor selectable = input.selection->selectable_scores(
        affinity, options_.sigmoid ? sdk::ScoreKind::kSigmoid : sdk::ScoreKind::kSoftmax, 0, {});

    sdk::RoutingDecision decision;
    // The affinities as a distribution: what the balance loss and the routing statistics read.
    decision.probs = affinity / affinity.sum(-1, /*keepdim=*/true).clamp_min(1e-20);
    at::Tensor keys;
    {
        at::NoGradGuard no_grad;  // the bias steers selection only and carries no gradient
        keys = selection_keys(selectable);
    }
    const auto [top_keys, indices] = keys.topk(options_.k, -1);
    const at::Tensor chosen = top_keys.isfinite();  // -inf: fewer than k selectable experts
    at::Tensor weights = selectable.gather(1, indices) * chosen;
    // Normalised only for k > 1: one expert's s / s = 1 would leave the gate without a gradient.
    if (options_.normalize && options_.k > 1) {
        weights = weights / weights.sum(-1, true).clamp_min(1e-20);
    }
    decision.expert_indices = indices.masked_fill(chosen.logical_not(), -1);
    decision.combine_weights = weights * options_.route_scale;

    // A frozen gate (a stage that trains other parameters) keeps its routing: no bias update.
    if (options_.bias_rate > 0 && weight_.requires_grad()) {
        account_load(decision.expert_indices, input);
    }
    balance_.add(decision, input);
    return decision;
}

void DeepSeekRouter::account_load(const at::Tensor& indices, const sdk::RouterInput& input) {
    // Device-side throughout: no synchronisation with the host on CUDA.
    at::NoGradGuard no_grad;
    const at::Tensor& pending = pending_step_;
    // The pending step is complete when a training micro-batch of another step arrives, and at
    // any evaluation (which never falls inside a step), so evaluation sees every update.
    const at::Tensor complete =
        input.training ? pending.ge(0).logical_and(pending.ne(input.step)) : pending.ge(0);
    const at::Tensor load = pending_load_;
    expert_bias_.add_(at::where(complete, options_.bias_rate * at::sign(load.mean() - load),
                                at::zeros_like(load)));
    pending_load_.masked_fill_(complete, 0.0);
    if (!input.training) {
        pending_step_.masked_fill_(complete, -1);
        return;
    }
    const at::Tensor assigned = indices.ge(0);
    at::Tensor counts = at::zeros({expert_count_}, expert_bias_.options())
                            .index_add_(0, indices.clamp_min(0).reshape({-1}),
                                        assigned.reshape({-1}).to(at::kFloat));
    pending_load_.add_(input.batch->sum(counts));  // every process's part of the step
    pending_step_.fill_(input.step);
}

}  // namespace moelab::plugins::deepseek

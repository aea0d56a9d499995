#include "expert_choice_router.h"

#include <algorithm>
#include <cmath>

#include "moelab/sdk/init.h"

namespace moelab::plugins::expert_choice {

std::int64_t expert_capacity(double capacity_factor, std::int64_t tokens, std::int64_t experts) {
    const double share = capacity_factor * static_cast<double>(tokens) / experts;
    // The small tolerance keeps an exact product (c = 2, 8 tokens, 4 experts: 4) from rounding up
    // through floating-point error.
    const auto capacity = static_cast<std::int64_t>(std::ceil(share - 1e-9));
    return std::clamp<std::int64_t>(capacity, 0, tokens);
}

ExpertChoiceRouter::ExpertChoiceRouter(const sdk::MoeLayerContext& context, double capacity_factor)
    : capacity_factor_(capacity_factor), expert_count_(context.model.experts) {
    at::Generator generator = sdk::make_generator(context.seed);
    weight_ = register_parameter(
        "weight",
        sdk::normal_weight({expert_count_, context.model.d_model}, context.init_std, generator));
}

sdk::RoutingDecision ExpertChoiceRouter::route(const sdk::RouterInput& input) {
    const std::int64_t tokens = input.hidden.size(0);
    sdk::RoutingDecision decision;
    decision.probs = input.hidden.matmul(weight_.t()).softmax(-1);  // (tokens, experts)
    // Note [Selection contract]: an expert may take only tokens whose returned score is not 0.
    const at::Tensor scores =
        input.selection->selectable_scores(decision.probs, sdk::ScoreKind::kSoftmax, 0, {});

    const std::int64_t capacity = expert_capacity(capacity_factor_, tokens, expert_count_);
    at::Tensor taken;  // (tokens, experts) bool
    {
        at::NoGradGuard no_grad;  // the choice itself carries no gradient; the weights below do
        const at::Tensor chosen = std::get<1>(scores.t().topk(capacity, -1));  // (experts, cap)
        taken = at::zeros({expert_count_, tokens}, scores.options().dtype(at::kBool))
                    .scatter_(1, chosen, true)
                    .t()
                    .logical_and(scores > 0);
    }
    const at::Tensor experts =
        at::arange(expert_count_, scores.options().dtype(at::kLong)).expand({tokens, -1});
    decision.expert_indices = experts.masked_fill(taken.logical_not(), -1);
    decision.combine_weights = scores * taken;
    decision.active_mask = taken;
    const at::Tensor per_token = taken.sum(-1).to(at::kFloat);
    if (tokens > 0) {
        decision.stats.emplace_back("experts_per_token", per_token.mean());
        decision.stats.emplace_back("unrouted_tokens", per_token.eq(0).to(at::kFloat).mean());
    }
    return decision;
}

}  // namespace moelab::plugins::expert_choice

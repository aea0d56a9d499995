#include "topp_router.h"

#include <algorithm>
#include <tuple>

#include "moelab/sdk/init.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::topp {

TopPOptions TopPOptions::from(const sdk::Params& params) {
    TopPOptions options;
    options.p = params.get_float("p");
    options.max_experts = params.get_int("max_experts");
    options.balance_coef = params.get_float("balance_coef");
    return options;
}

std::pair<at::Tensor, at::Tensor> select_top_p(const at::Tensor& probs, double p,
                                               std::int64_t max_experts) {
    auto [sorted, order] = probs.sort(/*dim=*/-1, /*descending=*/true);
    // Expert j is kept while the probability mass before it has not yet exceeded p. The
    // exclusive prefix sum is built by shifting, not by subtracting, so that a boundary such as
    // 0.3 + 0.1 vs p = 0.4 is decided on the same sums the definition uses.
    const at::Tensor before = at::cat({at::zeros_like(sorted.narrow(-1, 0, 1)),
                                       sorted.cumsum(-1).narrow(-1, 0, sorted.size(-1) - 1)},
                                      -1);
    at::Tensor keep = (before <= p) & (sorted > 0);  // score 0: not selectable
    // No tokens (a process holding none of an evaluation batch's rows): one empty slot column.
    std::int64_t slots = keep.size(0) == 0 ? 1 : keep.sum(-1).max().item<std::int64_t>();
    if (max_experts > 0) slots = std::min(slots, max_experts);
    keep = keep.narrow(-1, 0, slots);
    const at::Tensor indices = order.narrow(-1, 0, slots).masked_fill(keep.logical_not(), -1);
    const at::Tensor weights = probs.gather(-1, order.narrow(-1, 0, slots)) * keep;
    return {indices, weights};
}

TopPRouter::TopPRouter(const sdk::MoeLayerContext& context, const TopPOptions& options)
    : options_(options), expert_count_(context.model.experts) {
    at::Generator generator = sdk::make_generator(context.seed);
    weight_ = register_parameter(
        "weight",
        sdk::normal_weight({expert_count_, context.model.d_model}, context.init_std, generator));
}

sdk::RoutingDecision TopPRouter::route(const sdk::RouterInput& input) {
    const at::Tensor logits = input.hidden.matmul(weight_.t());  // (tokens, experts)
    sdk::RoutingDecision decision;
    decision.probs = logits.softmax(-1);
    const at::Tensor scores =
        input.selection->selectable_scores(decision.probs, sdk::ScoreKind::kSoftmax, 0, {});
    std::tie(decision.expert_indices, decision.combine_weights) =
        select_top_p(scores, options_.p, options_.max_experts);
    if (options_.balance_coef > 0) {
        decision.aux_losses.emplace_back(
            "balance", options_.balance_coef *
                           sdk::switch_balance_loss(decision.probs, decision.expert_indices,
                                                    expert_count_, input.batch));
    }
    return decision;
}

}  // namespace moelab::plugins::topp

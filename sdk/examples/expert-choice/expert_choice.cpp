// Expert-choice routing (Zhou et al., 2022, "Mixture-of-Experts with Expert Choice Routing") as a
// moelab router plugin: instead of each token choosing its top-k experts, each expert chooses the
// `capacity` tokens with the highest affinity to it. A token may be chosen by several experts or by
// none; moelab's routing decision expresses this with one slot per expert (-1 where the expert did
// not choose the token). Perfect load balance holds by construction, so there is no balance loss.
//
// Caveat for language modelling: an expert's choice looks at every token of the batch, future
// tokens included, so the model is not strictly causal at training time. It is here to show the
// SDK; moelab's built-in `expert_choice` router is the tested baseline (plugins/routers/
// expert_choice), and this example is named `expert-choice-example` to stay apart from it.

#include <cmath>
#include <string>

#include "moelab/sdk/init.h"
#include "moelab/sdk/plugin.h"

namespace expert_choice {

class ExpertChoiceRouter : public moelab::sdk::Router {
  public:
    ExpertChoiceRouter(const moelab::sdk::MoeLayerContext& context, double experts_per_token)
        : experts_per_token_(experts_per_token), expert_count_(context.model.experts) {
        at::Generator generator = moelab::sdk::make_generator(context.seed);
        weight_ = register_parameter(
            "weight", moelab::sdk::normal_weight({expert_count_, context.model.d_model},
                                                 context.init_std, generator));
    }

    moelab::sdk::RoutingDecision route(const moelab::sdk::RouterInput& input) override {
        const std::int64_t tokens = input.hidden.size(0);
        moelab::sdk::RoutingDecision decision;
        decision.probs = input.hidden.matmul(weight_.t()).softmax(-1);  // (tokens, experts)
        // Tokens per expert: on average `experts_per_token` experts process each token.
        const std::int64_t capacity = std::min<std::int64_t>(
            tokens, static_cast<std::int64_t>(std::ceil(experts_per_token_ * tokens /
                                                        static_cast<double>(expert_count_))));
        // Note [Selection contract]: the host may perturb the scores (robustness studies); an
        // expert may only choose tokens whose returned score is not 0.
        const at::Tensor scores = input.selection->selectable_scores(
            decision.probs, moelab::sdk::ScoreKind::kSoftmax, /*router=*/0, {});
        // Each expert (column) picks its `capacity` highest-affinity tokens.
        const at::Tensor chosen = std::get<1>(scores.t().topk(capacity, -1));  // (E, cap)
        const at::Tensor mask =
            at::zeros({expert_count_, tokens}, decision.probs.options().dtype(at::kBool))
                .scatter_(1, chosen, true)
                .t() &
            (scores > 0);  // (tokens, experts)
        const at::Tensor experts =
            at::arange(expert_count_, decision.probs.options().dtype(at::kLong))
                .expand({tokens, expert_count_});
        decision.expert_indices = at::where(mask, experts, at::full_like(experts, -1));
        decision.combine_weights = scores * mask;  // gradient flows into chosen weights
        decision.active_mask = mask;
        decision.stats.emplace_back("experts_per_token",
                                    mask.sum(-1).to(at::kFloat).mean().detach());
        return decision;
    }

  private:
    double experts_per_token_;
    std::int64_t expert_count_;
    at::Tensor weight_;  // (experts, d_model)
};

void register_components(moelab::sdk::Registrar& registrar) {
    moelab::sdk::RouterComponent component;
    component.name = "expert-choice-example";
    component.summary = "Expert-choice routing: each expert picks its top tokens (example)";
    component.params
        .add_float("experts_per_token", 2.0,
                   "Average experts per token; each expert takes ceil(c * tokens / experts) tokens")
        .between(0.01, 1024);
    // Every perturbation the host runs through the selection control applies to expert choice
    // too: a disabled expert cannot choose the token, noise and reassignment change the affinities.
    component.features = moelab::sdk::all_selection_perturbations();
    component.make_router = [](const moelab::sdk::MoeLayerContext& context,
                               const moelab::sdk::Params& params) {
        return std::make_shared<ExpertChoiceRouter>(context, params.get_float("experts_per_token"));
    };
    registrar.add_router(std::move(component));
}

}  // namespace expert_choice

MOELAB_PLUGIN("expert-choice-example", "0.1.0", "Example out-of-tree router plugin",
              expert_choice::register_components)

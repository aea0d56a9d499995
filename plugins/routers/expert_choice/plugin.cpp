// Registers the `expert_choice` router.

#include <string>

#include "expert_choice_router.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::expert_choice {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_float("capacity_factor", 2.0,
                "c: each expert takes the ceil(c * tokens / experts) tokens of the batch with the "
                "highest affinity, so a token gets c experts on average (the paper's EC-CF2: 2)")
        .between(0.01, 4096);
    return s;
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "expert_choice";
    component.summary =
        "Expert-choice routing: each expert takes its top tokens of the batch (not causal: "
        "docs/routers.md)";
    component.params = schema();
    // The host's perturbations act on the affinities the experts choose from. Not forced_balance:
    // it moves each token's r-th best score to a fixed expert so that token choice becomes
    // exactly uniform, which says nothing about the tokens an expert takes (expert choice is
    // uniform anyway), so a forced-balance number would not be the bound it is for token choice.
    // Not split_batch (Note [Expert choice in a causal LM]); sharded experts only see mix().
    for (const std::string& feature : sdk::all_selection_perturbations()) {
        if (feature != sdk::feature::kForcedBalance) component.features.push_back(feature);
    }
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<ExpertChoiceRouter>(context, params.get_float("capacity_factor"));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::expert_choice

MOELAB_PLUGIN("expert_choice", "1.0.0", "Expert-choice routing",
              moelab::plugins::expert_choice::register_components)

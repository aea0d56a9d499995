// Registers the `maskmoe` router.

#include <string>

#include "maskmoe_router.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::maskmoe {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_int("k", 2, "Experts per token (fewer when a token sees fewer experts)").between(1, 4096);
    s.add_int("visible_frequent", 4,
              "Experts visible to a frequent token (rare tokens see exactly one); >= k")
        .between(1, 4096);
    s.add_choice("frequent_by", "fraction", {"fraction", "count"},
                 "fraction: the top frequent_fraction of vocabulary ids by training-split count "
                 "are frequent; count: ids with at least frequent_min_count occurrences");
    s.add_float("frequent_fraction", 0.2, "Share of the vocabulary that is frequent (by count)")
        .between(0, 1);
    s.add_int("frequent_min_count", 100,
              "Occurrences that make an id frequent (frequent_by = "
              "\"count\")")
        .at_least(0);
    s.add_bool("per_layer", false,
               "A different random mask in every MoE layer; off: one table for all layers");
    s.add_float("balance_coef", 0.01,
                "Coefficient of the Switch load-balancing loss on the masked probabilities")
        .at_least(0);
    s.add_float("z_loss_coef", 0.0, "Coefficient of the ST-MoE router z-loss").at_least(0);
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    const std::int64_t k = params.get_int("k");
    const std::int64_t visible = params.get_int("visible_frequent");
    const std::int64_t experts = query.model.experts;
    if (experts > 0 && (k > experts || visible > experts)) {
        return sdk::Support::no("k = " + std::to_string(k) + " and visible_frequent = " +
                                std::to_string(visible) + " must not exceed the " +
                                std::to_string(experts) + " experts per layer ([moe] experts)");
    }
    if (visible < k) {
        return sdk::Support::no("visible_frequent = " + std::to_string(visible) + " is below k = " +
                                std::to_string(k) + ": frequent tokens would never use k experts");
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "maskmoe";
    component.summary = "MaskMoE: top-k routing behind a per-vocabulary routing mask";
    component.params = schema();
    component.supports = supports;
    component.features = sdk::all_selection_perturbations();
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<MaskMoeRouter>(context, MaskMoeOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::maskmoe

MOELAB_PLUGIN("maskmoe", "1.0.0", "MaskMoE router", moelab::plugins::maskmoe::register_components)

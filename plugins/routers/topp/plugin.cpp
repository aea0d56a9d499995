// Registers the `topp` router.

#include "moelab/sdk/plugin.h"
#include "topp_router.h"

namespace moelab::plugins::topp {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_float("p", 0.4,
                "Keep the shortest prefix of experts, by descending probability, whose cumulative "
                "probability exceeds p (the crossing expert is kept)")
        .between(0, 1);
    s.add_int("max_experts", 0, "Cap on experts per token; 0: no cap").between(0, 4096);
    s.add_float("balance_coef", 0.01,
                "Coefficient of the Switch load-balancing loss over the selected experts")
        .at_least(0);
    return s;
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "topp";
    component.summary = "Top-p router: shortest probability prefix above p, raw weights (TopP)";
    component.params = schema();
    component.features = sdk::all_selection_perturbations();
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<TopPRouter>(context, TopPOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::topp

MOELAB_PLUGIN("topp", "1.0.0", "Top-p router", moelab::plugins::topp::register_components)

// Registers the `dsmoe` router (an MoE block).

#include "moelab/sdk/plugin.h"
#include "dsmoe_block.h"

namespace moelab::plugins::dsmoe {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_float("tau", 0.5, "Gate threshold: expert i is active when sigmoid(x Y_i) > tau")
        .between(0, 1);
    s.add_bool("rescale", true, "Multiply the mixed output by n / #active (Eq. 8)");
    s.add_float("sparsity_coef", 1.0,
                "Coefficient of the sparsity loss (the paper uses 1); 0 disables it")
        .at_least(0);
    s.add_choice("sparsity_loss", "G", {"G", "S"},
                 "G: L1 of the thresholded gates as written in the paper (gradient reaches active "
                 "gates only); S: through the straight-through estimator (every gate)");
    s.add_bool("force_open", false,
               "Diagnostic: every expert active with weight 1 (no gate, and the rescale is n/n = "
               "1), so a converted block equals the dense FFN it was partitioned from");
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params&) {
    if (query.model.shared_experts > 0) {
        return sdk::Support::no("DSMoE has no shared experts; set [moe] shared_experts = 0");
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "dsmoe";
    component.summary =
        "DSMoE: sigmoid gates with a threshold and a straight-through estimator, sparsity loss";
    component.params = schema();
    component.supports = supports;
    component.features = sdk::all_selection_perturbations();
    // run_all on the routed experts: they cannot be sharded.
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.make_block = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<DsMoeBlock>(context, DsMoeOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::dsmoe

MOELAB_PLUGIN("dsmoe", "1.0.0", "DSMoE router", moelab::plugins::dsmoe::register_components)

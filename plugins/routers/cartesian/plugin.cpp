// Registers the `cartesian` router (an MoE block).

#include <string>

#include "cartesian_block.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::cartesian {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_int("k", 2, "Sub-experts per token in each of the two sub-layers").between(1, 4096);
    s.add_int("grain_level", 2,
              "Sub-experts (and shared sub-experts) have d_ff_expert / grain_level; 2 keeps the "
              "parameters of [moe] experts full-size experts")
        .between(1, 4096);
    s.add_bool("shared", true,
               "A shared sub-expert per sub-layer, mixed per token by a 2-way softmax");
    s.add_float("balance_coef", 0.01, "Coefficient of the Switch balance loss of each router")
        .at_least(0);
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    const std::int64_t k = params.get_int("k");
    const std::int64_t grain = params.get_int("grain_level");
    if (sdk::Support fit = sdk::experts_fit(k, "k", query); !fit.ok) return fit;
    if (query.model.shared_experts > 0) {
        return sdk::Support::no(
            "the block has its own shared sub-experts (shared = true); set "
            "[moe] shared_experts = 0");
    }
    if (query.model.d_ff_expert > 0 && query.model.d_ff_expert % grain != 0) {
        return sdk::Support::no(
            "grain_level = " + std::to_string(grain) +
            " must divide [moe] d_ff_expert = " + std::to_string(query.model.d_ff_expert));
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "cartesian";
    component.summary =
        "CartesianMoE: two routed sub-layers in sequence (Cartesian product experts)";
    component.params = schema();
    component.supports = supports;
    component.features = sdk::all_selection_perturbations();
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_block = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<CartesianBlock>(context, CartesianOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::cartesian

MOELAB_PLUGIN("cartesian", "1.0.0", "CartesianMoE router",
              moelab::plugins::cartesian::register_components)

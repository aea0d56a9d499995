// Registers the `finedeep` router (an MoE block).

#include <string>

#include "finedeep_block.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::finedeep {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_int("sublayers", 2, "M: sequential sub-layers, each with its norm and residual")
        .between(1, 64);
    s.add_int("experts_per_sublayer", 4,
              "K: fine-grained experts per sub-layer, each of [model] d_ff / (M K)")
        .between(1, 4096);
    s.add_choice("gate_input", "output", {"output", "input"},
                 "output: g_k = sigmoid(w_m . e_k), computed from each expert's output "
                 "(output-guided); input: g_k = sigmoid(w_mk . x) from the sub-layer input");
    s.add_float("nsar_epsilon", 0.01,
                "An expert intermediate activation a counts as non-sparse when |a| > epsilon "
                "(the banks' nsar statistic)")
        .at_least(0);
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    const std::int64_t parts = params.get_int("sublayers") * params.get_int("experts_per_sublayer");
    if (query.model.shared_experts > 0) {
        return sdk::Support::no(
            "Finedeep has no shared experts (all experts are active); set "
            "[moe] shared_experts = 0");
    }
    if (query.model.d_ff > 0 && query.model.d_ff % parts != 0) {
        return sdk::Support::no("sublayers x experts_per_sublayer = " + std::to_string(parts) +
                                " must divide [model] d_ff = " + std::to_string(query.model.d_ff) +
                                " (the dense FFN the block replaces)");
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "finedeep";
    component.summary =
        "Finedeep: M sub-layers of K dense fine-grained experts with sigmoid gates "
        "(interpretation)";
    component.params = schema();
    component.supports = supports;
    component.features = sdk::all_selection_perturbations();
    // run_all on the routed experts: they cannot be sharded.
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.make_block = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<FinedeepBlock>(context, FinedeepOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::finedeep

MOELAB_PLUGIN("finedeep", "1.0.0", "Finedeep router",
              moelab::plugins::finedeep::register_components)

// Registers the `hash` router.

#include <string>

#include "hash_router.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::hash {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_int("k", 1, "Experts per token, each weighted 1/k").between(1, 4096);
    s.add_choice("assignment", "random", {"random", "balanced"},
                 "random: k distinct experts per vocabulary id, uniformly from the seed; "
                 "balanced: ids by decreasing training-split count go to the least-loaded experts");
    s.add_bool("per_layer", false,
               "A different random table in every MoE layer; off: one table for all layers (the "
               "balanced table is the same in every layer)");
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    const std::int64_t k = params.get_int("k");
    if (sdk::Support fit = sdk::experts_fit(k, "k", query); !fit.ok) return fit;
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "hash";
    component.summary = "Hash router: a fixed token-id -> experts table (Hash Layer)";
    component.params = schema();
    component.supports = supports;
    // A hash table is no probability ranking and has no logits: disable_top and logit_noise do
    // not apply (the CartesianMoE paper leaves Hash out of its robustness table, methods.md §2.7).
    component.features = {
        std::string(sdk::feature::kExpertDropout), std::string(sdk::feature::kRandomRouting),
        std::string(sdk::feature::kForcedBalance), std::string(sdk::feature::kSplitBatch),
        std::string(sdk::feature::kShardedExperts)};
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<HashRouter>(context, HashOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::hash

MOELAB_PLUGIN("hash", "1.0.0", "Hash router", moelab::plugins::hash::register_components)

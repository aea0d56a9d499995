// Registers the `topk` router.

#include <string>

#include "moelab/sdk/plugin.h"
#include "topk_router.h"

namespace moelab::plugins::topk {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_int("k", 2, "Experts per token").between(1, 4096);
    s.add_choice("selection", "softmax_topk", {"softmax_topk", "topk_softmax"},
                 "softmax_topk: softmax over all experts, then the k largest (GShard/Switch); "
                 "topk_softmax: the k largest logits, then softmax over them (Mixtral)");
    s.add_bool("renormalize", true,
               "With softmax_topk and k > 1: rescale the k selected probabilities to sum to 1 "
               "(never at k = 1, where the weight p / p = 1 would cut the router's gradient)");
    s.add_float(
         "balance_coef", 0.01,
         "Coefficient of the Switch load-balancing loss, loads of each micro-batch (computed "
         "on the full softmax)")
        .at_least(0);
    s.add_float("sequence_balance_coef", 0.0,
                "Coefficient of the sequence-level balance loss: the Switch loss of each sequence, "
                "averaged over sequences (DeepSeek-V3)")
        .at_least(0);
    s.add_float(
         "global_balance_coef", 0.0,
         "Coefficient of the global-batch balance loss: the Switch loss with loads counted "
         "over the optimizer step's micro-batches so far, on every process (Qiu et al. 2025)")
        .at_least(0);
    s.add_float("z_loss_coef", 0.0, "Coefficient of the ST-MoE router z-loss").at_least(0);
    s.add_float("jitter", 0.0,
                "Training-time multiplicative input noise: hidden *= U(1 - jitter, 1 + jitter)")
        .between(0, 0.999);
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    const std::int64_t k = params.get_int("k");
    if (sdk::Support fit = sdk::experts_fit(k, "k", query); !fit.ok) return fit;
    if (query.wants(sdk::feature::kHfMixtralGate) &&
        params.get_string("selection") == "softmax_topk") {
        // Mixtral weights a token's experts by their probabilities divided by their sum, which
        // topk_softmax always does and softmax_topk only with renormalize at k > 1.
        if (k == 1) {
            return sdk::Support::no(
                "selection = softmax_topk with k = 1 weights each token's expert by its "
                "probability (Switch); Mixtral's weight is always 1 there: train with selection "
                "= topk_softmax for a Mixtral equivalent");
        }
        if (!params.get_bool("renormalize")) {
            return sdk::Support::no(
                "renormalize = false weights the selected experts by their softmax "
                "probabilities; Mixtral divides them by their sum: train with renormalize = true "
                "for a Mixtral equivalent");
        }
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "topk";
    component.summary = "Top-k softmax router (GShard/Switch) with balance loss, z-loss, jitter";
    component.params = schema();
    component.supports = supports;
    component.features = sdk::all_selection_perturbations();
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.features.emplace_back(sdk::feature::kHfMixtralGate);
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<TopKRouter>(context, TopKOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::topk

MOELAB_PLUGIN("topk", "1.2.0", "Top-k softmax router", moelab::plugins::topk::register_components)

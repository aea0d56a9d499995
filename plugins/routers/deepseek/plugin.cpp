// Registers the `deepseek` router.

#include <string>

#include "deepseek_router.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::deepseek {
namespace {

sdk::ParamSchema schema() {
    sdk::ParamSchema s;
    s.add_int("k", 2, "Experts per token").between(1, 4096);
    s.add_choice("score", "sigmoid", {"sigmoid", "softmax"},
                 "Affinity of a token to each expert: sigmoid(logit) per expert (DeepSeek-V3) or "
                 "a softmax over the experts");
    s.add_bool("normalize", true,
               "Divide the chosen experts' affinities by their sum (DeepSeek-V3 does, for "
               "sigmoid affinities)");
    s.add_float("route_scale", 1.0,
                "Multiplies the combine weights after normalisation (DeepSeek-V3: 2.5)")
        .between(0.001, 1000);
    s.add_int("groups", 1, "Experts fall into this many equal groups (DeepSeek-V3: 8)")
        .between(1, 4096);
    s.add_int("topk_groups", 1,
              "Each token's experts come from its best groups, ranked by the sum of their two "
              "largest selection scores (DeepSeek-V3: 4 of 8); used when groups > 1")
        .between(1, 4096);
    s.add_float("bias_rate", 0.001,
                "Auxiliary-loss-free balancing: after each optimizer step every expert's "
                "selection bias moves by this much towards balance, "
                "b += rate * sign(mean load - load) (DeepSeek-V3: 0.001); 0: off")
        .between(0, 1);
    s.add_float("balance_coef", 0.0,
                "Coefficient of the Switch load-balancing loss on the normalised affinities, per "
                "micro-batch (DeepSeek-V3 relies on the bias and uses none of this kind)")
        .at_least(0);
    s.add_float("sequence_balance_coef", 0.0,
                "Coefficient of the sequence-wise balance loss on the normalised affinities, "
                "averaged over sequences (DeepSeek-V3's complementary loss: 0.0001)")
        .at_least(0);
    s.add_float("global_balance_coef", 0.0,
                "Coefficient of the global-batch balance loss: loads counted over the optimizer "
                "step's micro-batches so far, on every process (Qiu et al. 2025)")
        .at_least(0);
    return s;
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    const std::int64_t k = params.get_int("k");
    if (sdk::Support fit = sdk::experts_fit(k, "k", query); !fit.ok) return fit;
    const std::int64_t groups = params.get_int("groups");
    const std::int64_t topk_groups = params.get_int("topk_groups");
    const std::int64_t experts = query.model.experts;
    if (groups > 1 && experts > 0) {
        if (experts % groups != 0) {
            return sdk::Support::no("groups = " + std::to_string(groups) + " does not divide the " +
                                    std::to_string(experts) + " experts per layer ([moe] experts)");
        }
        if (topk_groups > groups) {
            return sdk::Support::no("topk_groups = " + std::to_string(topk_groups) +
                                    " exceeds groups = " + std::to_string(groups));
        }
        if (topk_groups * (experts / groups) < k) {
            return sdk::Support::no("topk_groups = " + std::to_string(topk_groups) + " groups of " +
                                    std::to_string(experts / groups) +
                                    " experts hold fewer than k = " + std::to_string(k));
        }
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "deepseek";
    component.summary =
        "DeepSeek-V3 routing: sigmoid affinities, auxiliary-loss-free bias balancing, "
        "group-limited top-k";
    component.params = schema();
    component.supports = supports;
    // Every perturbation but forced_balance: the host perturbs the affinities and the learned bias
    // still steers the choice among what it leaves selectable, so a forced balance would not be
    // exact (its comparisons say n/a instead of reporting a number that is not a balance bound).
    for (const std::string& feature : sdk::all_selection_perturbations()) {
        if (feature != sdk::feature::kForcedBalance) component.features.push_back(feature);
    }
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<DeepSeekRouter>(context, DeepSeekOptions::from(params));
    };
    registrar.add_router(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::deepseek

MOELAB_PLUGIN("deepseek", "1.1.0", "DeepSeek-V3 routing with auxiliary-loss-free balancing",
              moelab::plugins::deepseek::register_components)

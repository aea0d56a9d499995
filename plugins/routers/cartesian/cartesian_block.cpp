#include "cartesian_block.h"

#include <tuple>

#include "moelab/sdk/init.h"
#include "moelab/sdk/no_autocast.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::cartesian {

CartesianOptions CartesianOptions::from(const sdk::Params& params) {
    CartesianOptions options;
    options.k = params.get_int("k");
    options.grain_level = params.get_int("grain_level");
    options.shared = params.get_bool("shared");
    options.balance_coef = params.get_float("balance_coef");
    return options;
}

RoutedSublayer::RoutedSublayer(const sdk::MoeLayerContext& context, const CartesianOptions& options,
                               const std::string& suffix, std::uint64_t seed)
    : options_(options), expert_count_(context.model.experts) {
    const std::int64_t d_model = context.model.d_model;
    const std::int64_t d_ff = context.model.d_ff_expert / options.grain_level;
    norm_ =
        register_module("norm", std::make_shared<sdk::RmsNorm>(d_model, context.model.norm_eps));
    at::Generator generator = sdk::make_generator(seed);
    router_ = register_parameter(
        "router", sdk::normal_weight({expert_count_, d_model}, context.init_std, generator));
    experts_ = register_module(
        "experts",
        context.host->make_expert_bank({"experts_" + suffix, expert_count_, d_model, d_ff, -1.0}));
    if (options.shared) {
        sdk::ExpertBankSpec spec{"shared_" + suffix, 1, d_model, d_ff, 0.0};
        spec.shared = true;
        shared_ = register_module("shared", context.host->make_expert_bank(spec));
        mixing_weight_ = register_parameter(
            "mixing_weight", sdk::normal_weight({2, d_model}, context.init_std, generator));
        mixing_bias_ = register_parameter("mixing_bias", at::zeros({2}));
    }
}

at::Tensor RoutedSublayer::forward(const at::Tensor& hidden, sdk::SelectionControl& selection,
                                   const sdk::BatchReduction* batch, int router,
                                   sdk::RoutingDecision& decision) {
    const at::Tensor x = norm_->forward(hidden);
    at::Tensor mixing;
    {
        // Note [fp32 routing]: the authors' code casts router and input to fp32 as well.
        sdk::NoAutocast fp32_routing;
        const at::Tensor x32 = x.to(at::kFloat);
        decision.probs = x32.matmul(router_.t()).softmax(-1);
        const at::Tensor scores =
            selection.selectable_scores(decision.probs, sdk::ScoreKind::kSoftmax, router, {});
        // Renormalised only when k > 1, like the authors' code.
        std::tie(decision.expert_indices, decision.combine_weights) =
            sdk::select_top_k(scores, options_.k, /*renormalize=*/true);
        if (shared_) mixing = at::linear(x32, mixing_weight_, mixing_bias_).softmax(-1);
    }
    at::Tensor update = experts_->mix(x, decision.expert_indices, decision.combine_weights);
    if (shared_) {
        const at::Tensor shared = shared_->run_all(x).squeeze(0);
        update = update * mixing.select(1, 0).unsqueeze(1).to(update.scalar_type()) +
                 shared * mixing.select(1, 1).unsqueeze(1).to(shared.scalar_type());
        decision.extensions.set(sdk::decision_extension::kTokenScale, mixing.select(1, 0).detach());
    }
    if (options_.balance_coef > 0) {
        decision.aux_losses.emplace_back(
            "balance", options_.balance_coef * sdk::switch_balance_loss(decision.probs,
                                                                        decision.expert_indices,
                                                                        expert_count_, batch));
    }
    return update;
}

CartesianBlock::CartesianBlock(const sdk::MoeLayerContext& context,
                               const CartesianOptions& options) {
    first_ = register_module("first",
                             std::make_shared<RoutedSublayer>(context, options, "a", context.seed));
    second_ = register_module(
        "second", std::make_shared<RoutedSublayer>(context, options, "b", context.seed + 1));
}

sdk::BlockOutput CartesianBlock::forward(const sdk::BlockInput& input) {
    sdk::BlockOutput output;
    sdk::RoutingDecision first, second;
    const at::Tensor middle =
        input.hidden + first_->forward(input.hidden, *input.selection, input.batch, 0, first)
                           .to(input.hidden.scalar_type());
    output.hidden = middle + second_->forward(middle, *input.selection, input.batch, 1, second)
                                 .to(input.hidden.scalar_type());
    for (auto& [name, loss] : first.aux_losses) output.aux_losses.emplace_back(name + "_a", loss);
    for (auto& [name, loss] : second.aux_losses) output.aux_losses.emplace_back(name + "_b", loss);
    first.aux_losses.clear();
    second.aux_losses.clear();
    output.routing.push_back(std::move(first));
    output.routing.push_back(std::move(second));
    return output;
}

}  // namespace moelab::plugins::cartesian

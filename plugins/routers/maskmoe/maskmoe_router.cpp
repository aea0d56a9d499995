#include "maskmoe_router.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::maskmoe {

MaskMoeOptions MaskMoeOptions::from(const sdk::Params& params) {
    MaskMoeOptions options;
    options.k = params.get_int("k");
    options.visible_frequent = params.get_int("visible_frequent");
    options.split_by_count = params.get_string("frequent_by") == "count";
    options.frequent_fraction = params.get_float("frequent_fraction");
    options.frequent_min_count = params.get_int("frequent_min_count");
    options.per_layer = params.get_bool("per_layer");
    options.balance_coef = params.get_float("balance_coef");
    options.z_loss_coef = params.get_float("z_loss_coef");
    return options;
}

at::Tensor frequent_ids(const at::Tensor& counts, const MaskMoeOptions& options) {
    const at::Tensor c = counts.to(at::kLong);
    if (options.split_by_count) return c >= options.frequent_min_count;
    const std::int64_t vocab = c.numel();
    const auto top = static_cast<std::int64_t>(
        std::llround(options.frequent_fraction * static_cast<double>(vocab)));
    // Stable sort by descending count: equal counts keep id order.
    const at::Tensor order = std::get<1>(c.sort(/*stable=*/true, 0, /*descending=*/true));
    at::Tensor frequent = at::zeros({vocab}, at::kBool);
    frequent.index_fill_(0, order.narrow(0, 0, top), true);
    return frequent;
}

at::Tensor build_mask(const at::Tensor& frequent, std::int64_t experts,
                      std::int64_t visible_frequent, std::uint64_t seed) {
    const std::int64_t vocab = frequent.numel();
    at::Generator generator = sdk::make_generator(seed);
    // A uniformly random ranking of the experts per id; the first V of it are visible.
    const at::Tensor rank =
        std::get<1>(std::get<1>(at::rand({vocab, experts}, generator).sort(-1)).sort(-1));
    const at::Tensor visible_count = at::where(
        frequent, at::full({vocab}, visible_frequent, at::kLong), at::ones({vocab}, at::kLong));
    return rank < visible_count.unsqueeze(1);
}

// The router weight already draws from the layer's seed; the per-layer mask must not reuse it.
constexpr std::uint64_t kPerLayerSalt = 0x6d61736b5f6d6f65ULL;

MaskMoeRouter::MaskMoeRouter(const sdk::MoeLayerContext& context, const MaskMoeOptions& options)
    : options_(options), expert_count_(context.model.experts) {
    at::Generator generator = sdk::make_generator(context.seed);
    weight_ = register_parameter(
        "weight",
        sdk::normal_weight({expert_count_, context.model.d_model}, context.init_std, generator));
    const at::Tensor counts = context.host->training_token_counts();
    if (counts.numel() != context.model.vocab_size) {
        throw sdk::Error("training token counts cover " + std::to_string(counts.numel()) +
                         " ids, the vocabulary has " + std::to_string(context.model.vocab_size));
    }
    visible = register_buffer(
        "visible",
        build_mask(frequent_ids(counts, options_), expert_count_, options_.visible_frequent,
                   options_.per_layer ? context.seed ^ kPerLayerSalt : context.model_seed));
}

sdk::RoutingDecision MaskMoeRouter::route(const sdk::RouterInput& input) {
    constexpr double kMasked = -std::numeric_limits<double>::infinity();
    const at::Tensor logits = input.hidden.matmul(weight_.t());  // (tokens, experts)
    const at::Tensor token_visible = visible.index_select(0, input.token_ids);
    // Every id sees at least one expert, so no row is all -inf.
    sdk::RoutingDecision decision;
    decision.probs =
        logits.masked_fill(token_visible.logical_not(), kMasked).softmax(-1);  // invisible: 0
    // The unmasked router is the fallback for a token whose visible experts were all disabled by
    // a perturbation, when the evaluation asks for it (none_left = "fallback").
    const at::Tensor scores = input.selection->selectable_scores(
        decision.probs, sdk::ScoreKind::kSoftmax, 0, logits.softmax(-1));
    // Renormalised over the selected experts only for k > 1 (k = 1 would get no gradient).
    std::tie(decision.expert_indices, decision.combine_weights) =
        sdk::select_top_k(scores, options_.k, /*renormalize=*/true);

    if (options_.balance_coef > 0) {
        decision.aux_losses.emplace_back(
            "balance", options_.balance_coef *
                           sdk::switch_balance_loss(decision.probs, decision.expert_indices,
                                                    expert_count_, input.batch));
    }
    if (options_.z_loss_coef > 0) {
        decision.aux_losses.emplace_back("z_loss",
                                         options_.z_loss_coef * sdk::router_z_loss(logits));
    }
    // The host does not count the statistics of a call without tokens; they must be finite.
    decision.stats.emplace_back("rare_token_fraction",
                                token_visible.size(0) == 0
                                    ? at::zeros({}, token_visible.options().dtype(at::kFloat))
                                    : (token_visible.sum(1) == 1).to(at::kFloat).mean().detach());
    return decision;
}

}  // namespace moelab::plugins::maskmoe

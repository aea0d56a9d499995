#include "hash_router.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::hash {

HashOptions HashOptions::from(const sdk::Params& params) {
    HashOptions options;
    options.k = params.get_int("k");
    options.balanced = params.get_string("assignment") == "balanced";
    options.per_layer = params.get_bool("per_layer");
    return options;
}

at::Tensor random_table(std::int64_t vocab, std::int64_t experts, std::int64_t k,
                        std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed);
    // A uniformly random permutation of the experts per id; its first k entries.
    const at::Tensor keys = at::rand({vocab, experts}, generator);
    return std::get<1>(keys.sort(/*dim=*/-1)).narrow(-1, 0, k).contiguous();
}

at::Tensor balanced_table(const at::Tensor& counts, std::int64_t experts, std::int64_t k) {
    const at::Tensor c = counts.to(at::kCPU).to(at::kLong).contiguous();
    const std::int64_t vocab = c.numel();
    const std::int64_t* count = c.data_ptr<std::int64_t>();
    std::vector<std::int64_t> ids(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(),
                     [&](std::int64_t a, std::int64_t b) { return count[a] > count[b]; });
    at::Tensor table = at::empty({vocab, k}, at::kLong);
    std::int64_t* out = table.data_ptr<std::int64_t>();
    std::vector<std::int64_t> load(experts, 0), order(experts);
    for (std::int64_t id : ids) {
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](std::int64_t a, std::int64_t b) {
                              return load[a] != load[b] ? load[a] < load[b] : a < b;
                          });
        for (std::int64_t s = 0; s < k; ++s) {
            out[id * k + s] = order[s];
            load[order[s]] += count[id];
        }
    }
    return table;
}

HashRouter::HashRouter(const sdk::MoeLayerContext& context, const HashOptions& options)
    : expert_count_(context.model.experts) {
    const std::int64_t experts = context.model.experts;
    const std::int64_t vocab = context.model.vocab_size;
    at::Tensor built;
    if (options.balanced) {
        const at::Tensor counts = context.host->training_token_counts();
        if (counts.numel() != vocab) {
            throw sdk::Error("training token counts cover " + std::to_string(counts.numel()) +
                             " ids, the vocabulary has " + std::to_string(vocab));
        }
        built = balanced_table(counts, experts, options.k);
    } else {
        built = random_table(vocab, experts, options.k,
                             options.per_layer ? context.seed : context.model_seed);
    }
    table = register_buffer("table", built);
}

sdk::RoutingDecision HashRouter::route(const sdk::RouterInput& input) {
    const at::Tensor indices = table.index_select(0, input.token_ids);  // (tokens, k)
    const std::int64_t k = indices.size(1);
    // The table as scores: 1/k on the token's k experts, a distribution with no ranking inside
    // it. Choosing the k non-zero scores and weighting them equally is the Hash Layer; through
    // the selection control the host can make experts unavailable or reassign them.
    const at::Tensor table_scores =
        at::zeros({indices.size(0), expert_count_}, input.hidden.options().dtype(at::kFloat))
            .scatter(1, indices, 1.0 / static_cast<double>(k));
    const at::Tensor scores =
        input.selection->selectable_scores(table_scores, sdk::ScoreKind::kSoftmax, 0, {});
    at::Tensor chosen = std::get<0>(sdk::select_top_k(scores, k, /*renormalize=*/false));
    // Equal scores leave top-k's order to the implementation: list each token's experts in
    // ascending order, empty slots last, so the decision is the same on every device.
    const at::Tensor key = std::get<0>(chosen.masked_fill(chosen < 0, expert_count_).sort(1));
    chosen = key.masked_fill(key == expert_count_, -1);
    const at::Tensor used = (chosen >= 0).to(at::kFloat);
    sdk::RoutingDecision decision;
    decision.expert_indices = chosen;
    decision.combine_weights = used / used.sum(1, /*keepdim=*/true).clamp_min(1.0);
    return decision;
}

}  // namespace moelab::plugins::hash

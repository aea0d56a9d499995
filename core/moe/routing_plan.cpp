#include "core/moe/routing_plan.h"

namespace moelab::core {

namespace {

at::Tensor stable_order(const at::Tensor& keys, bool descending = false) {
    return std::get<1>(at::sort(keys, /*stable=*/true, 0, descending));
}

// Rows per key in [0, buckets): a scatter add, which unlike bincount needs no maximum read back.
at::Tensor count_keys(const at::Tensor& keys, std::int64_t buckets) {
    return at::zeros({buckets}, keys.options()).index_add_(0, keys, at::ones_like(keys));
}

}  // namespace

RoutingPlan plan_routing(const at::Tensor& indices, const at::Tensor& weights, std::int64_t experts,
                         double capacity_factor, bool keep_highest_weight,
                         const at::Tensor& given_capacity) {
    const at::Tensor flat = indices.reshape({-1});
    // Empty slots sort after every expert.
    const at::Tensor key = at::where(flat >= 0, flat, at::full({}, experts, flat.options()));
    const bool capped = capacity_factor > 0;

    // Stable sorts keep token order inside an expert; with a capacity and keep_highest_weight the
    // first sort puts each expert's heaviest assignments first.
    at::Tensor order;
    if (capped && keep_highest_weight) {
        const at::Tensor by_weight =
            stable_order(weights.detach().reshape({-1}), /*descending=*/true);
        order = by_weight.index_select(0, stable_order(key.index_select(0, by_weight)));
    } else {
        order = stable_order(key);
    }
    const at::Tensor per_key = count_keys(key, experts + 1);
    at::Tensor processed = per_key.narrow(0, 0, experts);
    RoutingPlan plan;
    plan.requested = processed.sum();
    plan.dropped = at::zeros({}, processed.options());
    if (capped) {
        const at::Tensor capacity =
            given_capacity.defined()
                ? given_capacity
                : at::ceil(plan.requested.to(at::kDouble) * capacity_factor / experts)
                      .to(at::kLong);
        // A row's rank inside its key's group; rows of rank >= capacity are dropped: they take
        // the key of empty slots and a second stable sort moves them behind the last group.
        const at::Tensor sorted_key = key.index_select(0, order);
        const at::Tensor group_start = at::cumsum(per_key, 0) - per_key;  // (experts + 1,)
        const at::Tensor rank =
            at::arange(order.numel(), key.options()) - group_start.index_select(0, sorted_key);
        const at::Tensor kept = (sorted_key < experts).logical_and(rank < capacity);
        const at::Tensor kept_key =
            at::where(kept, sorted_key, at::full({}, experts, key.options()));
        order = order.index_select(0, stable_order(kept_key));
        const at::Tensor capped_counts = at::minimum(processed, capacity);
        plan.dropped = (processed - capped_counts).sum();
        processed = capped_counts;
    }
    plan.order = order;
    plan.processed = processed;
    plan.group_ends = at::cumsum(processed, 0);
    return plan;
}

}  // namespace moelab::core

#pragma once

// The expert bank's routing plan: which rows the grouped expert kernel runs, grouped by expert.
// Computed with fixed-size tensor operations on the device of the indices (stable sorts, scatter
// adds, cumulative sums), so planning needs no host synchronisation: every (token, slot) pair is a
// row, and the rows that are not routed (empty slots, capacity drops) go after the last group,
// where kernels ignore them.

#include <cstdint>

#include <ATen/ATen.h>

namespace moelab::core {

struct RoutingPlan {
    // (tokens * slots,) int64: the assignment (token * slots + slot) each row takes. Rows of expert
    // e are [group_ends[e - 1], group_ends[e]) (from 0 for e = 0), in token order, or with a
    // capacity and keep_highest_weight in descending weight; the rest are not routed.
    at::Tensor order;
    at::Tensor group_ends;  // (experts,) int64
    at::Tensor processed;   // (experts,) int64: rows of each expert (after capacity)
    at::Tensor requested;   // () int64: valid assignments (slots with an expert)
    at::Tensor dropped;     // () int64: assignments dropped for capacity
};

// indices: (tokens, slots) int64 in [-1, experts) (-1: empty slot), already checked;
// weights: (tokens, slots), only read to order assignments when keep_highest_weight applies.
// capacity_factor 0 is dropless; otherwise each expert keeps at most
// ceil(capacity_factor * requested / experts) rows, or `capacity` rows when it is given (a () int64
// tensor: the capacity computed from every process's assignments, for experts sharded across
// processes).
RoutingPlan plan_routing(const at::Tensor& indices, const at::Tensor& weights, std::int64_t experts,
                         double capacity_factor, bool keep_highest_weight,
                         const at::Tensor& capacity = {});

}  // namespace moelab::core

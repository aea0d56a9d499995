// The expert bank's routing plan against a naive per-expert loop: which assignments each expert
// keeps, in which order, the counts, and that unrouted rows come last.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/moe/routing_plan.h"

namespace moelab::core {
namespace {

// Per expert, its assignments (token * slots + slot) in token order, or by descending weight
// (ties in token order) when keep_highest; then the first `capacity` of each.
std::vector<std::vector<std::int64_t>> naive_groups(const std::vector<std::int64_t>& expert,
                                                    const std::vector<double>& weight,
                                                    std::int64_t experts, double capacity_factor,
                                                    bool keep_highest) {
    std::vector<std::vector<std::int64_t>> groups(experts);
    std::int64_t requested = 0;
    for (std::size_t a = 0; a < expert.size(); ++a) {
        if (expert[a] < 0) continue;
        groups[expert[a]].push_back(static_cast<std::int64_t>(a));
        ++requested;
    }
    if (capacity_factor <= 0) return groups;
    const auto capacity = static_cast<std::size_t>(
        std::ceil(capacity_factor * static_cast<double>(requested) / experts));
    for (auto& group : groups) {
        if (keep_highest) {
            std::stable_sort(group.begin(), group.end(),
                             [&](std::int64_t a, std::int64_t b) { return weight[a] > weight[b]; });
        }
        if (group.size() > capacity) group.resize(capacity);
    }
    return groups;
}

struct Case {
    const char* name;
    double capacity_factor;
    bool keep_highest;
};

class PlanRouting : public ::testing::TestWithParam<Case> {};

TEST_P(PlanRouting, MatchesTheNaiveLoop) {
    const Case c = GetParam();
    // 7 tokens, 2 slots, 4 experts; -1 empty slots; expert 1 popular, expert 3 unused.
    const std::vector<std::int64_t> expert = {1, 0, 1, -1, 2, 1, 1, 0, -1, -1, 1, 2, 0, 1};
    const std::vector<double> weight = {0.6, 0.4, 0.9, 0.0, 0.3, 0.7,  0.2,
                                        0.8, 0.0, 0.0, 0.6, 0.4, 0.55, 0.45};
    const std::int64_t experts = 4, slots = 2;
    const at::Tensor indices =
        at::tensor(expert, at::TensorOptions().dtype(at::kLong)).reshape({-1, slots});
    const at::Tensor weights = at::tensor(weight, at::TensorOptions().dtype(at::kDouble))
                                   .to(at::kFloat)
                                   .reshape({-1, slots});
    const RoutingPlan plan =
        plan_routing(indices, weights, experts, c.capacity_factor, c.keep_highest);

    const auto groups = naive_groups(expert, weight, experts, c.capacity_factor, c.keep_highest);
    std::vector<std::int64_t> routed;
    std::int64_t end = 0;
    for (std::int64_t e = 0; e < experts; ++e) {
        routed.insert(routed.end(), groups[e].begin(), groups[e].end());
        end += static_cast<std::int64_t>(groups[e].size());
        EXPECT_EQ(plan.group_ends[e].item<std::int64_t>(), end) << "expert " << e;
        EXPECT_EQ(plan.processed[e].item<std::int64_t>(),
                  static_cast<std::int64_t>(groups[e].size()))
            << "expert " << e;
    }
    ASSERT_EQ(plan.order.numel(), static_cast<std::int64_t>(expert.size()));
    for (std::size_t i = 0; i < routed.size(); ++i) {
        EXPECT_EQ(plan.order[static_cast<std::int64_t>(i)].item<std::int64_t>(), routed[i])
            << "row " << i;
    }
    // The rest are every other assignment once: the order is a permutation.
    std::vector<std::int64_t> all(plan.order.data_ptr<std::int64_t>(),
                                  plan.order.data_ptr<std::int64_t>() + plan.order.numel());
    std::sort(all.begin(), all.end());
    std::vector<std::int64_t> identity(expert.size());
    std::iota(identity.begin(), identity.end(), 0);
    EXPECT_EQ(all, identity);
    EXPECT_EQ(plan.requested.item<std::int64_t>(), 11);
    EXPECT_EQ(plan.dropped.item<std::int64_t>(), 11 - static_cast<std::int64_t>(routed.size()));
}

// Capacity 0.5 * 11 / 4 -> 2 rows per expert; expert 1 asks for 6, expert 0 for 3.
INSTANTIATE_TEST_SUITE_P(Policies, PlanRouting,
                         ::testing::Values(Case{"dropless", 0.0, true},
                                           Case{"capacity_keep_highest", 0.5, true},
                                           Case{"capacity_first_come", 0.5, false},
                                           Case{"capacity_loose", 1.0, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PlanRoutingByHand, CapacityKeepsTheHeaviestInWeightOrder) {
    // Expert 0 is asked by tokens 0, 1, 2 with weights 0.2, 0.9, 0.5; capacity ceil(1 * 4 / 2) = 2.
    const at::Tensor indices =
        at::tensor({0, 0, 0, 1}, at::TensorOptions().dtype(at::kLong)).reshape({-1, 1});
    const at::Tensor weights = at::tensor({0.2f, 0.9f, 0.5f, 1.0f}).reshape({-1, 1});
    const RoutingPlan plan = plan_routing(indices, weights, 2, 1.0, true);
    EXPECT_TRUE(
        at::equal(plan.order, at::tensor({1, 2, 3, 0}, at::TensorOptions().dtype(at::kLong))));
    EXPECT_TRUE(
        at::equal(plan.group_ends, at::tensor({2, 3}, at::TensorOptions().dtype(at::kLong))));
    EXPECT_EQ(plan.dropped.item<std::int64_t>(), 1);
}

}  // namespace
}  // namespace moelab::core

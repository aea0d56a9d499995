// The balance losses a router can add (routing_ops.h, global_batch_balance.h) against hand-worked
// values and written-out loops, and the topk and deepseek options that add them, through the
// host's MoE layer with the sequence length and micro-batch it hands every router.

#include <gtest/gtest.h>

#include <vector>

#include "moelab/sdk/global_batch_balance.h"
#include "moelab/sdk/routing_ops.h"
#include "router_fixture.h"

namespace moelab::tests {
namespace {

// experts * sum_e f_e P_e of one group of rows, written out: f over the assignments of the rows,
// P the mean of each row's scores divided by the row's sum.
double switch_loss_loop(const at::Tensor& scores, const at::Tensor& indices, std::int64_t first,
                        std::int64_t rows) {
    const std::int64_t experts = scores.size(1);
    std::vector<double> count(experts, 0.0), share(experts, 0.0);
    double assignments = 0;
    for (std::int64_t t = first; t < first + rows; ++t) {
        double row_sum = 0;
        for (std::int64_t e = 0; e < experts; ++e) row_sum += scores[t][e].item<double>();
        for (std::int64_t e = 0; e < experts; ++e) {
            share[e] += scores[t][e].item<double>() / row_sum / rows;
        }
        for (std::int64_t j = 0; j < indices.size(1); ++j) {
            const std::int64_t e = indices[t][j].item<std::int64_t>();
            if (e < 0) continue;
            count[e] += 1;
            assignments += 1;
        }
    }
    if (assignments == 0) return 0.0;  // no expert used: no load to balance
    double loss = 0;
    for (std::int64_t e = 0; e < experts; ++e) loss += count[e] / assignments * share[e];
    return static_cast<double>(experts) * loss;
}

double sequence_loss_loop(const at::Tensor& scores, const at::Tensor& indices,
                          std::int64_t length) {
    const std::int64_t sequences = scores.size(0) / length;
    double total = 0;
    for (std::int64_t s = 0; s < sequences; ++s) {
        total += switch_loss_loop(scores, indices, s * length, length);
    }
    return total / static_cast<double>(sequences);
}

// Two sequences of two tokens, two experts, one slot each, worked by hand:
//   sequence 0: p = (.75, .25) twice, both tokens to expert 0: f = (1, 0), P = (.75, .25) -> 1.5
//   sequence 1: p = (.5, .5) twice, one token each:            f = (.5, .5), P = (.5, .5) -> 1
// mean 1.25. As one sequence: f = (.75, .25), P = (.625, .375) -> 2 (.46875 + .09375) = 1.125.
TEST(SequenceBalanceLoss, HandWorkedTwoSequences) {
    const at::Tensor p = at::tensor({.75, .25, .75, .25, .5, .5, .5, .5}, at::kFloat).view({4, 2});
    const at::Tensor indices = at::tensor({0, 0, 0, 1}, at::kLong).view({4, 1});
    EXPECT_NEAR(sdk::sequence_balance_loss(p, indices, 2, 2).item<double>(), 1.25, 1e-6);
    EXPECT_NEAR(sdk::sequence_balance_loss(p, indices, 2, 0).item<double>(), 1.125, 1e-6);
    // Sigmoid affinities count as their share of the row's sum: (3, 1) is (.75, .25).
    const at::Tensor sigmoid_like = p * 4.0;
    EXPECT_NEAR(sdk::sequence_balance_loss(sigmoid_like, indices, 2, 2).item<double>(), 1.25, 1e-6);
}

TEST(SequenceBalanceLoss, MatchesALoopOverSequencesWithEmptySlots) {
    at::manual_seed(3);
    const at::Tensor scores = at::rand({24, 5}) + 0.01;
    at::Tensor indices = at::randint(5, {24, 2}, at::kLong);
    indices.index_put_({at::rand({24, 2}) < 0.2}, -1);
    for (std::int64_t length : {1, 3, 8, 24}) {
        EXPECT_NEAR(sdk::sequence_balance_loss(scores, indices, 5, length).item<double>(),
                    sequence_loss_loop(scores, indices, length), 1e-5)
            << "sequence length " << length;
    }
    EXPECT_THROW(sdk::sequence_balance_loss(scores, indices, 5, 7), sdk::Error);
    // Its gradient reaches the scores (f is a count, P carries the gradient).
    const at::Tensor leaf = scores.clone().requires_grad_(true);
    sdk::sequence_balance_loss(leaf, indices, 5, 8).backward();
    EXPECT_GT(leaf.grad().abs().sum().item<double>(), 0.0);
}

// Another process holding `other` assignments per expert in every call.
class TwoProcesses final : public sdk::BatchReduction {
  public:
    explicit TwoProcesses(at::Tensor other) : other_(std::move(other)) {}
    at::Tensor sum(const at::Tensor& local) const override { return local.detach() + other_; }
    int parts() const override { return 2; }

  private:
    at::Tensor other_;
};

// Loads accumulate over micro-batches 0..m of a step and over processes; micro-batch 0 starts a
// new step; evaluation neither reads nor changes the step's loads.
TEST(GlobalBatchBalance, RunningLoadsOverTheStepsMicroBatchesAndProcesses) {
    const TwoProcesses reduction(at::tensor({1.0, 0.0, 0.0}));
    sdk::GlobalBatchBalance balance(3);
    const at::Tensor a = at::tensor({0, 0, 1, -1}, at::kLong).view({2, 2});  // e0 x2, e1 x1
    const at::Tensor b = at::tensor({2, 2, 2, 1}, at::kLong).view({2, 2});   // e2 x3, e1 x1
    const at::Tensor c = at::tensor({1, 1}, at::kLong).view({2, 1});         // e1 x2
    auto expect_fraction = [](const at::Tensor& got, std::vector<double> counts) {
        double total = 0;
        for (double n : counts) total += n;
        for (int e = 0; e < 3; ++e) EXPECT_NEAR(got[e].item<double>(), counts[e] / total, 1e-6);
    };
    // Step 1: this process's counts plus the other process's 1 of expert 0, per micro-batch.
    expect_fraction(balance.step_fraction(a, true, 0, reduction), {3, 1, 0});
    expect_fraction(balance.step_fraction(b, true, 1, reduction), {4, 2, 3});
    expect_fraction(balance.step_fraction(c, false, 0, reduction), {1, 2, 0});  // evaluation
    expect_fraction(balance.step_fraction(c, true, 2, reduction), {5, 4, 3});
    // Step 2 starts over.
    expect_fraction(balance.step_fraction(c, true, 0, reduction), {1, 2, 0});

    // The loss: experts * sum_e F_e * (mean probability of e in this micro-batch).
    sdk::GlobalBatchBalance fresh(3);
    const at::Tensor probs = at::tensor({.5, .3, .2, .1, .6, .3}, at::kFloat).view({2, 3});
    fresh.step_fraction(a, true, 0, reduction);
    const double loss = fresh.loss(probs, b, true, 1, reduction).item<double>();
    EXPECT_NEAR(loss, 3 * (4.0 / 9 * .3 + 2.0 / 9 * .45 + 3.0 / 9 * .25), 1e-6);
}

// The options of topk and deepseek through the host's layer: each loss appears under its name,
// times its coefficient, computed from the decision's own probabilities and selections with the
// sequence length and micro-batch the layer was given.
TEST(BalanceLossOptions, TopkAndDeepSeekAddEachLossWithItsCoefficient) {
    for (const std::string router : {"topk", "deepseek"}) {
        Options options = {
            {"balance_coef", 0.0}, {"sequence_balance_coef", 0.3}, {"global_balance_coef", 0.7}};
        if (router == "deepseek") options["bias_rate"] = 0.0;
        BuiltLayer built = build_layer(router, options, LayerSpec{.experts = 6});
        at::manual_seed(11);
        at::Tensor step_counts = at::zeros({6});
        for (std::int64_t micro = 0; micro < 3; ++micro) {
            sdk::BlockInput input;
            input.hidden = at::randn({12, 8});
            input.token_ids = at::zeros({12}, at::kLong);
            input.training = true;
            input.sequence_length = 4;
            input.micro_batch = micro;
            input.micro_batches = 3;
            const sdk::BlockOutput out = built.forward(input);
            const sdk::RoutingDecision& d = out.routing.at(0);
            for (std::int64_t t = 0; t < 12; ++t) {
                for (std::int64_t j = 0; j < d.expert_indices.size(1); ++j) {
                    const std::int64_t e = d.expert_indices[t][j].item<std::int64_t>();
                    if (e >= 0) step_counts[e] += 1;
                }
            }
            const at::Tensor fraction = step_counts / step_counts.sum();
            const double global = 6 * (fraction * d.probs.mean(0)).sum().item<double>();
            ASSERT_EQ(out.aux_losses.size(), 2u) << router;
            EXPECT_EQ(out.aux_losses[0].first, "sequence_balance");
            EXPECT_NEAR(out.aux_losses[0].second.item<double>(),
                        0.3 * sequence_loss_loop(d.probs, d.expert_indices, 4), 1e-5)
                << router << " micro-batch " << micro;
            EXPECT_EQ(out.aux_losses[1].first, "global_balance");
            EXPECT_NEAR(out.aux_losses[1].second.item<double>(), 0.7 * global, 1e-5)
                << router << " micro-batch " << micro;
        }
    }
}

}  // namespace
}  // namespace moelab::tests

// core/system/step_profiler.h: forward time goes to the innermost open scope, backward nodes to
// the family their forward operation ran in, and the rows of the breakdown add up to the step.
// Work of known length is a sleep: the bounds below are the sleeps, with room for a busy machine
// only where a bound is an upper one.

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include <torch/torch.h>

#include "core/system/profile_scope.h"
#include "core/system/step_profiler.h"

namespace moelab::core {
namespace {

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// The identity, with a backward that takes 60 ms.
struct SlowBackward : torch::autograd::Function<SlowBackward> {
    static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& x) {
        return x.clone();
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                   torch::autograd::variable_list grads) {
        sleep_ms(60);
        return {grads[0]};
    }
};

const StepProfiler::Row& row(const std::vector<StepProfiler::Row>& rows, const std::string& name) {
    for (const auto& r : rows) {
        if (r.name == name) return r;
    }
    throw std::out_of_range("no row " + name);
}

TEST(StepProfiler, ChargesForwardTimeToTheInnermostScopeAndBackwardNodesToTheirForwardFamily) {
    StepProfiler profiler;
    const at::Tensor x = torch::ones({4}, torch::requires_grad());
    profiler.begin_step();
    profiler.mark(StepPhase::kForward);
    at::Tensor loss;
    {
        ProfileScope layer(OpFamily::kNormsElementwise);
        sleep_ms(20);
        at::Tensor h;
        {
            ProfileScope experts(OpFamily::kExperts);
            sleep_ms(40);
            h = SlowBackward::apply(x * 3);
        }
        {
            ProfileScope router(OpFamily::kRouter);
            loss = (h * 2).sum();
        }
    }
    profiler.mark(StepPhase::kBackward);
    loss.backward();
    profiler.end_step(/*tokens=*/8);

    const std::vector<StepProfiler::Row> rows = profiler.breakdown();
    const auto& norms = row(rows, "norms and elementwise");
    const auto& experts = row(rows, "experts");
    const auto& router = row(rows, "router");
    // Exclusive forward time: the layer's 20 ms without the experts' 40 nested in it.
    EXPECT_GE(norms.forward, 0.020);
    EXPECT_LT(norms.forward, 0.050);
    EXPECT_GE(experts.forward, 0.040);
    // The slow backward node was made inside the experts' scope; the router's nodes are quick.
    EXPECT_GE(experts.backward, 0.060);
    EXPECT_LT(router.backward, 0.030);
    EXPECT_LT(norms.backward, 0.030);
    EXPECT_EQ(row(rows, "attention").forward, 0);
    EXPECT_EQ(row(rows, "attention").backward, 0);
    // x's gradient lands through the engine's accumulation node.
    EXPECT_GT(row(rows, "gradient accumulation").backward, 0);

    double total = 0;
    for (const auto& r : rows) total += r.total();
    EXPECT_NEAR(total, profiler.step_seconds(), 1e-12);
    EXPECT_NEAR(
        profiler.phase_seconds(StepPhase::kForward) + profiler.phase_seconds(StepPhase::kBackward),
        profiler.step_seconds(), 1e-12);
    EXPECT_EQ(profiler.to_json()["tokens_per_step"].get<double>(), 8);
    EXPECT_NE(profiler.table().find("experts"), std::string::npos);
}

TEST(StepProfiler, AveragesOverStepsAndIgnoresWorkOutsideThem) {
    StepProfiler profiler;
    for (int step = 0; step < 2; ++step) {
        {
            ProfileScope outside(OpFamily::kAttention);  // an evaluation between steps
            sleep_ms(30);
        }
        profiler.begin_step();
        profiler.mark(StepPhase::kOptimizer);
        {
            ProfileScope inside(OpFamily::kAttention);
            sleep_ms(10);
        }
        profiler.end_step(4);
    }
    const std::vector<StepProfiler::Row> rows = profiler.breakdown();
    EXPECT_EQ(profiler.steps(), 2);
    EXPECT_GE(profiler.step_seconds(), 0.010);
    EXPECT_LT(profiler.step_seconds(), 0.030);  // the 30 ms between steps are nobody's
    // Scopes count in the forward phase only; these ran in the optimizer's.
    EXPECT_GE(row(rows, "optimizer").rest, 0.010);
    EXPECT_EQ(row(rows, "attention").forward, 0);
}

TEST(StepProfiler, OnlyOneAtATime) {
    StepProfiler first;
    EXPECT_THROW(StepProfiler second, std::logic_error);
}

}  // namespace
}  // namespace moelab::core

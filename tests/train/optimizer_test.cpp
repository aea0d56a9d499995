// AdamW against its update rule written out, gradient clipping, and the learning-rate schedule.

#include <gtest/gtest.h>

#include <cmath>

#include "core/train/adamw.h"
#include "core/train/schedule.h"

namespace moelab::core {
namespace {

TEST(AdamW, MatchesTheUpdateRuleOverSeveralSteps) {
    const AdamWOptions o{0.9, 0.95, 1e-8, 0.1};
    at::Tensor p = at::tensor({1.0, -2.0, 0.5}, at::kDouble).requires_grad_();
    at::Tensor norm = at::tensor({3.0}, at::kDouble).requires_grad_();  // not decayed
    AdamW optimizer({{"p", p, true}, {"norm", norm, false}}, o);
    std::vector<double> ref = {1.0, -2.0, 0.5}, m(3, 0), v(3, 0);
    double ref_norm = 3.0, m_norm = 0, v_norm = 0;
    const double lr = 0.01;
    for (int t = 1; t <= 3; ++t) {
        const std::vector<double> g = {0.3 * t, -0.1, 0.2 / t};
        p.mutable_grad() = at::tensor(g, at::kDouble);
        norm.mutable_grad() = at::tensor({0.5}, at::kDouble);
        optimizer.step(lr);
        for (int i = 0; i < 3; ++i) {
            ref[i] *= 1 - lr * o.weight_decay;
            m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
            v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
            const double mh = m[i] / (1 - std::pow(o.beta1, t));
            const double vh = v[i] / (1 - std::pow(o.beta2, t));
            ref[i] -= lr * mh / (std::sqrt(vh) + o.eps);
        }
        m_norm = o.beta1 * m_norm + (1 - o.beta1) * 0.5;
        v_norm = o.beta2 * v_norm + (1 - o.beta2) * 0.25;
        ref_norm -= lr * (m_norm / (1 - std::pow(o.beta1, t))) /
                    (std::sqrt(v_norm / (1 - std::pow(o.beta2, t))) + o.eps);
    }
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i].item<double>(), ref[i], 1e-12) << i;
    EXPECT_NEAR(norm[0].item<double>(), ref_norm, 1e-12);
    EXPECT_EQ(optimizer.steps(), 3);
}

TEST(AdamW, StateRoundTripsThroughNamedTensors) {
    at::Tensor p = at::ones({2}).requires_grad_();
    AdamW a({{"p", p}}, AdamWOptions{});
    p.mutable_grad() = at::ones({2});
    a.step(0.1);
    std::map<std::string, at::Tensor> saved;
    for (const NamedTensor& t : a.state()) saved[t.name] = t.tensor.clone();
    at::Tensor q = at::ones({2}).requires_grad_();
    AdamW b({{"p", q}}, AdamWOptions{});
    b.load_state(saved, a.steps());
    EXPECT_EQ(b.steps(), 1);
    saved.erase("exp_avg_sq/p");
    EXPECT_THROW(b.load_state(saved, 1), CheckpointError);
}

TEST(ClipGradNorm, ScalesToTheBoundAndReportsTheOriginalNorm) {
    at::Tensor a = at::zeros({2}).requires_grad_();
    at::Tensor b = at::zeros({1}).requires_grad_();
    a.mutable_grad() = at::tensor({3.0f, 0.0f});
    b.mutable_grad() = at::tensor({4.0f});
    EXPECT_NEAR(clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);
    EXPECT_NEAR(at::cat({a.grad(), b.grad()}).norm().item<double>(), 1.0, 1e-5);
    EXPECT_NEAR(clip_grad_norm({a, b}, 0.0), 1.0, 1e-5);  // 0 disables clipping
    b.mutable_grad() = at::tensor({std::nanf("")});
    EXPECT_TRUE(std::isnan(clip_grad_norm({a, b}, 1.0)));
}

TEST(LearningRate, WarmsUpLinearlyThenDecaysByCosineToTheMinimum) {
    TrainOptions t;
    t.steps = 110;
    t.warmup_steps = 10;
    t.lr_peak = 1.0;
    t.lr_min = 0.1;
    EXPECT_DOUBLE_EQ(learning_rate(t, 0), 0.1);
    EXPECT_DOUBLE_EQ(learning_rate(t, 9), 1.0);
    EXPECT_DOUBLE_EQ(learning_rate(t, 10), 1.0);
    EXPECT_NEAR(learning_rate(t, 60), 0.55, 1e-12);  // half way: midpoint
    EXPECT_NEAR(learning_rate(t, 110), 0.1, 1e-12);
    t.warmup_steps = 0;
    EXPECT_DOUBLE_EQ(learning_rate(t, 0), 1.0);
}

}  // namespace
}  // namespace moelab::core

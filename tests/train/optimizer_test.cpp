// AdamW against its update rule written out (also for a parameter that starts training late),
// gradient clipping, the learning-rate schedule and the stage plan.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/config/diagnostics.h"
#include "core/train/adamw.h"
#include "core/train/schedule.h"
#include "core/train/stage_plan.h"
#include "kernels/binding/fused_adamw.h"
#include "kernels/binding/pass_pool.h"

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

TEST(AdamW, Float32ParametersFollowTheRuleInOnePassOnAnyNumberOfThreads) {
    // Large enough for the pass to be split among threads; the rule written out in double from
    // the same float32 gradients.
    const AdamWOptions o{0.9, 0.95, 1e-8, 0.1};
    constexpr std::int64_t kSize = 100003;
    at::Generator gen = at::detail::createCPUGenerator(3);
    const at::Tensor start = at::randn({kSize}, gen);
    std::vector<at::Tensor> grads;
    for (int t = 0; t < 3; ++t) grads.push_back(at::randn({kSize}, gen) * (t + 1));
    auto train = [&](int parts) {
        kernels::binding::limit_pass_parts(parts);
        at::Tensor p = start.clone().requires_grad_();
        AdamW optimizer({{"p", p, true}}, o);
        for (const at::Tensor& g : grads) {
            p.mutable_grad() = g.clone();
            optimizer.step(0.01);
        }
        kernels::binding::limit_pass_parts(0);
        return p.detach();
    };
    const at::Tensor many = train(0);
    EXPECT_TRUE(at::equal(train(1), many));

    at::Tensor ref = start.to(at::kDouble), m = at::zeros_like(ref), v = at::zeros_like(ref);
    for (int t = 1; t <= 3; ++t) {
        const at::Tensor g = grads[static_cast<std::size_t>(t - 1)].to(at::kDouble);
        ref = ref * (1 - 0.01 * o.weight_decay);
        m = o.beta1 * m + (1 - o.beta1) * g;
        v = o.beta2 * v + (1 - o.beta2) * g * g;
        ref = ref - 0.01 * (m / (1 - std::pow(o.beta1, t))) /
                        ((v / (1 - std::pow(o.beta2, t))).sqrt() + o.eps);
    }
    EXPECT_EQ(many.scalar_type(), at::kFloat);
    EXPECT_LT((many.to(at::kDouble) - ref).abs().max().item<double>(), 2e-6);
}

TEST(AdamW, TheOnePassUpdateTakesFloat32CpuTensorsAndCountsItsWrites) {
    // The path the test above exercises through AdamW::step: it runs (returns true) for
    // contiguous float32 CPU tensors, and bumps their versions as in-place operations do.
    at::Tensor p = at::randn({1000});
    const at::Tensor g = at::randn({1000});
    at::Tensor m = at::zeros({1000}), v = at::zeros({1000});
    const auto version = p._version();
    const kernels::binding::AdamWConstants c{0.9, 0.95, 1e-8, 0.999, 0.01, 0.2};
    EXPECT_TRUE(kernels::binding::fused_adamw_step(p, g, m, v, c));
    EXPECT_GT(p._version(), version);
    at::Tensor strided = at::randn({1000, 2}).select(1, 0);
    EXPECT_FALSE(kernels::binding::fused_adamw_step(strided, g, m, v, c));
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

TEST(AdamW, AParameterThatStartsTrainingLateIsCorrectedAsAtItsFirstStep) {
    // Stage 1 trains `early` for 3 steps with `late` frozen (no gradient); stage 2 trains both.
    // `late`'s first update must be the written-out first AdamW step: m = (1 - b1) g,
    // v = (1 - b2) g^2, bias-corrected to g and g^2, so the step is lr g / (|g| + eps) after decay.
    const AdamWOptions o{0.9, 0.95, 1e-8, 0.1};
    at::Tensor early = at::tensor({1.0}, at::kDouble).requires_grad_();
    at::Tensor late = at::tensor({2.0, -1.0}, at::kDouble).requires_grad_();
    AdamW optimizer({{"early", early, true}, {"late", late, true}}, o);
    for (int t = 0; t < 3; ++t) {
        early.mutable_grad() = at::tensor({0.5}, at::kDouble);
        optimizer.step(0.01);
        optimizer.zero_grad();
    }
    EXPECT_DOUBLE_EQ(late[0].item<double>(), 2.0);  // frozen: untouched, no decay
    std::map<std::string, at::Tensor> state;
    for (const NamedTensor& t : optimizer.state()) state[t.name] = t.tensor.clone();
    EXPECT_EQ(state.count("exp_avg/late"), 0u);  // no state for a parameter never updated
    EXPECT_EQ(optimizer.parameter_steps(), (std::map<std::string, std::int64_t>{{"early", 3}}));

    const double lr = 0.02;
    const std::vector<double> g{0.3, -4.0};
    late.mutable_grad() = at::tensor(g, at::kDouble);
    early.mutable_grad() = at::tensor({0.5}, at::kDouble);
    optimizer.step(lr);
    const std::vector<double> start{2.0, -1.0};
    for (int i = 0; i < 2; ++i) {
        const double decayed = start[i] * (1 - lr * o.weight_decay);
        const double expected = decayed - lr * g[i] / (std::abs(g[i]) + o.eps);
        EXPECT_NEAR(late[i].item<double>(), expected, 1e-12) << i;
    }
    EXPECT_EQ(optimizer.steps(), 4);
    EXPECT_EQ(optimizer.parameter_steps(),
              (std::map<std::string, std::int64_t>{{"early", 4}, {"late", 1}}));
}

TEST(AdamW, RestoresPerParameterStepsAndStateOnlyWhereThereIsSome) {
    at::Tensor a = at::ones({2}).requires_grad_();
    at::Tensor b = at::ones({3}).requires_grad_();
    AdamW first({{"a", a}, {"b", b}}, AdamWOptions{});
    a.mutable_grad() = at::ones({2});
    first.step(0.1);
    first.step(0.1);
    std::map<std::string, at::Tensor> saved;
    for (const NamedTensor& t : first.state()) saved[t.name] = t.tensor.clone();
    const auto steps = first.parameter_steps();

    at::Tensor a2 = a.detach().clone().requires_grad_();
    at::Tensor b2 = b.detach().clone().requires_grad_();
    AdamW second({{"a", a2}, {"b", b2}}, AdamWOptions{});
    second.load_state(saved, first.steps(), &steps);
    EXPECT_EQ(second.parameter_steps(), steps);
    // The same next update from both.
    for (auto* optimizer : {&first, &second}) {
        (optimizer == &first ? a : a2).mutable_grad() = at::full({2}, 0.25);
        (optimizer == &first ? b : b2).mutable_grad() = at::full({3}, -0.5);
        optimizer->step(0.1);
    }
    EXPECT_TRUE(at::equal(a, a2));
    EXPECT_TRUE(at::equal(b, b2));
    // A parameter that has steps but no moments is a damaged checkpoint.
    std::map<std::string, std::int64_t> claims{{"a", 2}, {"b", 2}};
    EXPECT_THROW(second.load_state(saved, 2, &claims), CheckpointError);
}

TEST(Glob, MatchesStarsAcrossDotsAndSingleCharacters) {
    EXPECT_TRUE(glob_match("*", "layer0.attention.w_query"));
    EXPECT_TRUE(glob_match("*norm*", "layer1.attention_norm.weight"));
    EXPECT_TRUE(glob_match("layer?.moe.*", "layer3.moe.block.router.w_gate"));
    EXPECT_FALSE(glob_match("layer?.moe.*", "layer12.moe.block.router.w_gate"));
    EXPECT_TRUE(glob_match("final_norm.weight", "final_norm.weight"));
    EXPECT_FALSE(glob_match("final_norm", "final_norm.weight"));
    EXPECT_TRUE(glob_match("a*b*c", "aXbYbZc"));
    EXPECT_FALSE(glob_match("a*b*c", "aXbYbZ"));
    EXPECT_TRUE(glob_match("**", ""));
}

Recipe two_stage_recipe() {
    Recipe recipe;
    recipe.file = "two.toml";
    StageOptions first;
    first.name = "norms";
    first.steps = 4;
    first.lr_peak = 1.0;
    first.lr_min = 0.5;
    first.warmup_steps = 2;
    first.trainable = {"*norm*"};
    StageOptions second;
    second.name = "all";
    second.steps = 10;
    second.lr_peak = 0.2;
    second.lr_min = 0.0;
    second.warmup_steps = 0;
    recipe.stages = {first, second};
    recipe.train.steps = 14;
    return recipe;
}

TEST(StagePlan, EachStageHasItsOwnScheduleFromItsFirstStep) {
    const StagePlan plan(two_stage_recipe());
    ASSERT_EQ(plan.size(), 2u);
    EXPECT_EQ(plan.first_step(1), 4);
    EXPECT_EQ(plan.total_steps(), 14);
    EXPECT_EQ(plan.at(3).index, 0u);
    EXPECT_EQ(plan.at(4).index, 1u);
    EXPECT_EQ(plan.at(4).step_in_stage, 0);
    EXPECT_EQ(plan.at(20).index, 1u);              // past the end: the last stage
    EXPECT_DOUBLE_EQ(plan.learning_rate(0), 0.5);  // warm-up 1/2 of 1.0
    EXPECT_DOUBLE_EQ(plan.learning_rate(1), 1.0);
    // Decay spans steps - warmup_steps = 2 steps, reaching lr_min one step after the stage's
    // last (as learning_rate(train, steps) does): half way at the stage's last step.
    EXPECT_DOUBLE_EQ(plan.learning_rate(3), 0.75);
    EXPECT_DOUBLE_EQ(plan.learning_rate(4), 0.2);    // stage 2 starts at its peak (no warm-up)
    EXPECT_NEAR(plan.learning_rate(9), 0.1, 1e-12);  // half way through stage 2
}

TEST(StagePlan, WithoutStagesOneStageTrainsEverythingOnTheTrainSchedule) {
    Recipe recipe;
    recipe.train.steps = 50;
    recipe.train.warmup_steps = 5;
    const StagePlan plan(recipe);
    ASSERT_EQ(plan.size(), 1u);
    for (std::int64_t step : {0, 4, 5, 27, 49}) {
        EXPECT_DOUBLE_EQ(plan.learning_rate(step), learning_rate(recipe.train, step)) << step;
    }
    const auto masks = plan.trainable(recipe, {"a.weight", "b"});
    EXPECT_EQ(masks, (std::vector<std::vector<bool>>{{true, true}}));
}

TEST(StagePlan, APatternMatchingNothingIsAnErrorNamingItAndTheNearestNames) {
    Recipe recipe = two_stage_recipe();
    recipe.stages[1].trainable = {"layer0.atention.*", "*"};
    const std::vector<std::string> names{"layer0.attention.w_query", "layer0.attention_norm.weight",
                                         "final_norm.weight", "embedding"};
    const StagePlan plan(recipe);
    try {
        plan.trainable(recipe, names);
        FAIL() << "a pattern that matches nothing was accepted";
    } catch (const ConfigError& error) {
        ASSERT_EQ(error.issues().size(), 1u);
        EXPECT_EQ(error.issues()[0].key, "stage[1].trainable");
        EXPECT_NE(error.issues()[0].message.find(
                      "pattern \"layer0.atention.*\" matches no parameter of the model (nearest: "
                      "layer0.attention.w_query"),
                  std::string::npos)
            << error.issues()[0].message;
    }
    recipe.stages[1].trainable = {"*"};
    const auto masks = StagePlan(recipe).trainable(recipe, names);
    EXPECT_EQ(masks[0], (std::vector<bool>{false, true, true, false}));
    EXPECT_EQ(masks[1], (std::vector<bool>{true, true, true, true}));
}

}  // namespace
}  // namespace moelab::core

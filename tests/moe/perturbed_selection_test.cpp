// The host's routing perturbations (core/moe/perturbed_selection.h) on hand-built scores, each
// against its written-out definition (docs/robustness.md), and the host's check of the selection
// contract on hand-built decisions.

#include <gtest/gtest.h>

#include "core/moe/perturbed_selection.h"
#include "core/plugin/plugin_error.h"
#include "moelab/sdk/init.h"

namespace moelab::core {
namespace {

using sdk::ScoreKind;

at::Tensor rows(std::vector<std::vector<float>> values) {
    std::vector<at::Tensor> out;
    for (auto& row : values) out.push_back(at::tensor(row, at::kFloat));
    return at::stack(out);
}

Perturbation make(PerturbationKind kind, double strength) {
    Perturbation p;
    p.kind = kind;
    p.strength = strength;
    return p;
}

void expect_close(const at::Tensor& got, const at::Tensor& want) {
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-7)) << "got\n" << got << "\nwant\n" << want;
}

TEST(DisableTop, RemovesTheTopExpertsAndRenormalisesTheRest) {
    const at::Tensor p = rows({{0.5f, 0.3f, 0.2f, 0.0f}, {0.1f, 0.2f, 0.3f, 0.4f}});
    Perturbation top1 = make(PerturbationKind::kDisableTop, 1);
    PerturbedScores out = perturb_scores(p, ScoreKind::kSoftmax, {}, top1, 7);
    expect_close(out.scores,
                 rows({{0, 0.6f, 0.4f, 0}, {0.1f / 0.6f, 0.2f / 0.6f, 0.3f / 0.6f, 0}}));
    EXPECT_TRUE(at::equal(out.disabled, rows({{1, 0, 0, 0}, {0, 0, 0, 1}}).to(at::kBool)));

    top1.renormalize = false;
    out = perturb_scores(p, ScoreKind::kSoftmax, {}, top1, 7);
    expect_close(out.scores, rows({{0, 0.3f, 0.2f, 0}, {0.1f, 0.2f, 0.3f, 0}}));

    // Two removed; the never-selectable expert of score 0 is not counted as a rank.
    const Perturbation top3 = make(PerturbationKind::kDisableTop, 3);
    out = perturb_scores(p, ScoreKind::kSoftmax, {}, top3, 7);
    expect_close(out.scores, rows({{0, 0, 0, 0}, {1, 0, 0, 0}}));
}

TEST(DisableTop, SigmoidGatesAreZeroedNeverRenormalised) {
    const at::Tensor q = rows({{0.9f, 0.1f, 0.7f}});
    const PerturbedScores out =
        perturb_scores(q, ScoreKind::kSigmoid, {}, make(PerturbationKind::kDisableTop, 2), 1);
    expect_close(out.scores, rows({{0, 0.1f, 0}}));
}

TEST(DisableTop, ZeroIsTheIdentity) {
    const at::Tensor p = at::rand({5, 6});
    const PerturbedScores out =
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kDisableTop, 0), 1);
    EXPECT_TRUE(at::equal(out.scores, p));
    EXPECT_FALSE(out.disabled.defined());
}

TEST(DisableTop, ATokenWithNothingLeftGetsNoExpertOrItsFallback) {
    // MaskMoE's rare token: one visible expert, disabled.
    const at::Tensor masked = rows({{0, 1, 0, 0}});
    const at::Tensor unmasked = rows({{0.1f, 0.2f, 0.3f, 0.4f}});
    Perturbation top1 = make(PerturbationKind::kDisableTop, 1);
    expect_close(perturb_scores(masked, ScoreKind::kSoftmax, unmasked, top1, 1).scores,
                 rows({{0, 0, 0, 0}}));
    top1.none_left = NoneLeft::kFallback;
    expect_close(perturb_scores(masked, ScoreKind::kSoftmax, unmasked, top1, 1).scores,
                 rows({{0.125f, 0, 0.375f, 0.5f}}));
}

TEST(LogitNoise, IsSoftmaxOfLogProbabilitiesPlusSigmaTimesANormalDraw) {
    const at::Tensor p = rows({{0.7f, 0.2f, 0.1f, 0.0f}, {0.25f, 0.25f, 0.25f, 0.25f}});
    const PerturbedScores out =
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kLogitNoise, 0.5), 42);
    at::Generator generator = sdk::make_generator(42);
    const at::Tensor noise = 0.5 * at::randn({2, 4}, generator, at::kFloat);
    expect_close(out.scores, (p.log() + noise).softmax(1));
    EXPECT_EQ(out.scores[0][3].item<float>(), 0.0f);  // an impossible expert stays impossible

    const at::Tensor q = rows({{0.9f, 0.5f, 0.2f}});
    const PerturbedScores gates =
        perturb_scores(q, ScoreKind::kSigmoid, {}, make(PerturbationKind::kLogitNoise, 2.0), 3);
    at::Generator g2 = sdk::make_generator(3);
    const at::Tensor n2 = 2.0 * at::randn({1, 3}, g2, at::kFloat);
    expect_close(gates.scores, at::sigmoid(at::log(q / (1 - q)) + n2));
}

TEST(ExpertDropout, DropsTheSameExpertsForEveryTokenOfTheBatch) {
    const at::Tensor p = at::full({3, 8}, 1.0f / 8);
    const PerturbedScores out =
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kExpertDropout, 0.5), 9);
    at::Generator generator = sdk::make_generator(9);
    const at::Tensor dropped = at::rand({1, 8}, generator, at::kFloat) < 0.5;
    const auto kept = (8 - dropped.sum().item<std::int64_t>());
    ASSERT_GT(kept, 0);
    expect_close(out.scores,
                 at::where(dropped, at::zeros({1}), at::full({1}, 1.0f / kept)).expand({3, 8}));
    EXPECT_TRUE(at::equal(out.disabled, dropped.expand({3, 8})));
    // p = 1 leaves nothing; p = 0 leaves everything.
    EXPECT_EQ(
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kExpertDropout, 1), 9)
            .scores.sum()
            .item<float>(),
        0.0f);
    EXPECT_TRUE(at::equal(
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kExpertDropout, 0), 9)
            .scores,
        p));
}

TEST(RandomRouting, ChosenTokensGetAUniformPermutationOfTheirScores) {
    const at::Tensor p = at::rand({64, 5}).softmax(1);
    const PerturbedScores out =
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kRandomRouting, 0.25), 5);
    at::Generator generator = sdk::make_generator(5);
    const at::Tensor chosen = at::rand({64, 1}, generator, at::kFloat) < 0.25;
    const at::Tensor permutation = std::get<1>(at::rand({64, 5}, generator, at::kFloat).sort(1));
    expect_close(out.scores, at::where(chosen, p.gather(1, permutation), p));
    // The profile of every token is kept: the same sorted scores.
    EXPECT_TRUE(at::equal(std::get<0>(out.scores.sort(1)), std::get<0>(p.sort(1))));
    const auto changed = (out.scores != p).any(1).sum().item<std::int64_t>();
    EXPECT_GT(changed, 0);
    EXPECT_LE(changed, chosen.sum().item<std::int64_t>());
}

TEST(ForcedBalance, RotatesEachTokensRankingSoThatLoadIsUniform) {
    const at::Tensor p = rows({{0.1f, 0.6f, 0.3f}, {0.5f, 0.2f, 0.3f}, {0.2f, 0.2f, 0.6f}});
    const PerturbedScores out =
        perturb_scores(p, ScoreKind::kSoftmax, {}, make(PerturbationKind::kForcedBalance, 0), 1);
    // Token t puts its r-th highest score on expert (t + r) mod 3.
    expect_close(out.scores, rows({{0.6f, 0.3f, 0.1f}, {0.2f, 0.5f, 0.3f}, {0.2f, 0.2f, 0.6f}}));
    // Top-1 over 3 tokens: one token per expert.
    const at::Tensor load = at::bincount(out.scores.argmax(1), {}, 3);
    EXPECT_TRUE(at::equal(load, at::ones({3}, at::kLong)));
}

TEST(PerturbedSelection, SeedsEachLayerBatchAndRouterIndependentlyAndReproducibly) {
    const Perturbation noise = make(PerturbationKind::kLogitNoise, 1.0);
    const at::Tensor p = at::full({4, 6}, 1.0f / 6);
    auto draw = [&](std::int64_t layer, std::int64_t batch, int router) {
        PerturbedSelection selection(&noise, {layer, batch, 0});
        return selection.selectable_scores(p, ScoreKind::kSoftmax, router, {});
    };
    EXPECT_TRUE(at::equal(draw(1, 2, 0), draw(1, 2, 0)));
    EXPECT_FALSE(at::equal(draw(1, 2, 0), draw(1, 3, 0)));
    EXPECT_FALSE(at::equal(draw(1, 2, 0), draw(2, 2, 0)));
    EXPECT_FALSE(at::equal(draw(1, 2, 0), draw(1, 2, 1)));
}

TEST(PerturbedSelection, RecordsWhenItPerturbedGatesRatherThanARanking) {
    const Perturbation top1 = make(PerturbationKind::kDisableTop, 1);
    PerturbedSelection softmax(&top1, {0, 0, 0});
    softmax.selectable_scores(rows({{0.6f, 0.4f}}), ScoreKind::kSoftmax, 0, {});
    EXPECT_FALSE(softmax.perturbed_gates());
    PerturbedSelection gates(&top1, {0, 0, 0});
    gates.selectable_scores(rows({{0.9f, 0.2f}}), ScoreKind::kSigmoid, 0, {});
    EXPECT_TRUE(gates.perturbed_gates());
    PerturbedSelection plain(nullptr, {0, 0, 0});
    plain.selectable_scores(rows({{0.9f, 0.2f}}), ScoreKind::kSigmoid, 0, {});
    EXPECT_FALSE(plain.perturbed_gates());
}

TEST(PerturbedSelection, AppliesOnlyToTheLayersAndRoutersItNames) {
    Perturbation top1 = make(PerturbationKind::kDisableTop, 1);
    top1.layers = {3};
    top1.routers = {1};
    const at::Tensor p = rows({{0.6f, 0.4f}});
    PerturbedSelection other_layer(&top1, {2, 0, 0});
    EXPECT_TRUE(at::equal(other_layer.selectable_scores(p, ScoreKind::kSoftmax, 1, {}), p));
    PerturbedSelection layer3(&top1, {3, 0, 0});
    EXPECT_TRUE(at::equal(layer3.selectable_scores(p, ScoreKind::kSoftmax, 0, {}), p));
    expect_close(layer3.selectable_scores(p, ScoreKind::kSoftmax, 1, {}), rows({{0, 1}}));
}

PluginInfo fixture_plugin() {
    PluginInfo plugin;
    plugin.name = "fixture";
    plugin.file = "/plugins/libfixture.so";
    return plugin;
}

sdk::RoutingDecision decision(std::vector<std::vector<float>> indices,
                              std::vector<std::vector<float>> weights) {
    sdk::RoutingDecision d;
    d.expert_indices = rows(std::move(indices)).to(at::kLong);
    d.combine_weights = rows(std::move(weights));
    return d;
}

std::string check_message(PerturbedSelection& selection, const sdk::BlockOutput& output) {
    try {
        selection.check(output, fixture_plugin());
    } catch (const PluginError& error) {
        return error.what();
    }
    return "";
}

TEST(SelectionContract, ADecisionUsingADisabledExpertIsAnErrorNamingPluginLayerAndBatch) {
    const Perturbation top1 = make(PerturbationKind::kDisableTop, 1);
    PerturbedSelection selection(&top1, {4, 2, 100});
    selection.selectable_scores(rows({{0.5f, 0.3f, 0.2f}, {0.2f, 0.3f, 0.5f}}), ScoreKind::kSoftmax,
                                0, {});
    sdk::BlockOutput good;
    good.routing.push_back(decision({{1, -1}, {1, 0}}, {{1, 0}, {0.6f, 0.4f}}));
    EXPECT_EQ(check_message(selection, good), "");

    sdk::BlockOutput bad;  // token 1 chose its disabled top expert 2
    bad.routing.push_back(decision({{1, 2}, {2, 1}}, {{1, 0}, {0.6f, 0.4f}}));
    const std::string message = check_message(selection, bad);
    EXPECT_NE(message.find("plugin 'fixture'"), std::string::npos) << message;
    EXPECT_NE(message.find("layer 4, evaluation batch 2 (model step 100)"), std::string::npos)
        << message;
    EXPECT_NE(message.find("chose expert 2 for token 1 (slot 0)"), std::string::npos) << message;
    EXPECT_NE(message.find("1 such choice(s)"), std::string::npos) << message;
}

TEST(SelectionContract, ARouterThatNeverHandsOverItsScoresIsAnError) {
    const Perturbation noise = make(PerturbationKind::kLogitNoise, 1);
    PerturbedSelection selection(&noise, {0, 0, 0});
    sdk::BlockOutput output;
    output.routing.push_back(decision({{0}}, {{1}}));
    const std::string message = check_message(selection, output);
    EXPECT_NE(message.find("lists perturbation.logit_noise but router 0 never handed its scores"),
              std::string::npos)
        << message;
    // Without a perturbation nothing is required.
    PerturbedSelection plain(nullptr, {0, 0, 0});
    EXPECT_EQ(check_message(plain, output), "");
}

TEST(SelectionContract, RouterNumbersBeyondTheBlocksDecisionsAreAnError) {
    Perturbation top1 = make(PerturbationKind::kDisableTop, 1);
    top1.routers = {1};
    PerturbedSelection selection(&top1, {0, 0, 0});
    selection.selectable_scores(rows({{0.5f, 0.5f}}), ScoreKind::kSoftmax, 0, {});
    sdk::BlockOutput output;
    output.routing.push_back(decision({{0}}, {{1}}));
    const std::string message = check_message(selection, output);
    EXPECT_NE(message.find("names router 1, but this block reports 1 router decision(s)"),
              std::string::npos)
        << message;
}

}  // namespace
}  // namespace moelab::core

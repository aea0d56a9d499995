// `moelab run` with [[stage]] tables end to end: frozen parameters stay bit-identical to their
// initialisation, the metrics say what each stage trains, resuming inside stage 2 gives the same
// loss curve bit for bit, and bad stage settings are recipe errors naming the key.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/config/recipe_loader.h"
#include "core/model/model_assembly.h"
#include "core/plugin/loader.h"
#include "core/train/model_state.h"
#include "support/run_files.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class StagedRun : public ::testing::Test {
  protected:
    StagedRun() : corpus_(6000) {
        // Stage 1 (steps 1-6) trains only the norms; stage 2 (steps 7-12) everything.
        std::ofstream(dir("staged.toml"))
            << "extends = \"" << (fs::path(MOELAB_SOURCE_DIR) / "tests/recipes/tiny.toml").string()
            << "\"\n\n[[stage]]\nname = \"norms\"\nsteps = 6\nlr_peak = 1e-2\n"
               "trainable = [\"*norm*\"]\n\n[[stage]]\nname = \"all\"\nsteps = 6\n";
    }

    CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    fs::path dir(const std::string& name) const { return corpus_.root() / name; }

    TestCorpus corpus_;
};

TEST_F(StagedRun, FrozenParametersKeepTheirInitialValuesAndTheMetricsSayWhatEachStageTrains) {
    const CommandResult run = moelab("run staged.toml --out a");
    ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
    EXPECT_NE(run.out.find("stage 1/2 'norms' (6 steps)"), std::string::npos) << run.out;

    const auto stages = metrics_records(dir("a"), "stage");
    ASSERT_EQ(stages.size(), 2u);
    EXPECT_EQ(stages[0]["step"], 0);
    EXPECT_EQ(stages[1]["step"], 6);
    EXPECT_EQ(stages[0]["name"], "norms");
    // Norm scales: attention_norm and the MoE block's norm in each of 2 layers, and final_norm,
    // each d_model = 32 values.
    EXPECT_EQ(stages[0]["trainable_parameters"], 5 * 32);
    EXPECT_EQ(stages[0]["trainable_tensors"], 5);
    EXPECT_EQ(stages[1]["trainable_parameters"], stages[1]["total_parameters"]);
    EXPECT_EQ(metrics_records(dir("a"), "train")[6]["stage"], 1);

    // The run's model as initialised: assembled from its resolved recipe (seeded), no training.
    core::Recipe recipe = core::load_recipe(dir("a") / "recipe.resolved.toml", {});
    recipe.train.device = core::DeviceChoice::kCpu;
    core::PluginRegistry registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const sdk::CapabilityQuery query =
        core::capability_query(recipe, core::DeviceChoice::kCpu, 257, {});
    const core::ResolvedRecipe resolved = core::resolve_recipe(std::move(recipe), registry, query);
    const auto initial = core::assemble_model(resolved, core::DeviceChoice::kCpu, 257,
                                              [] { return at::ones({257}, at::kLong); });
    const auto after_stage1 =
        core::load_checkpoint(dir("a") / "checkpoints" / "step-4", core::CheckpointParts::kModel);
    const auto after_stage2 =
        core::load_checkpoint(dir("a") / "checkpoints" / "step-12", core::CheckpointParts::kModel);
    std::size_t frozen = 0, trained = 0;
    for (const auto& item : initial->named_parameters()) {
        const at::Tensor& start = item.value();
        const at::Tensor& mid = after_stage1.model.at(item.key());
        const at::Tensor& end = after_stage2.model.at(item.key());
        if (item.key().find("norm") == std::string::npos) {
            EXPECT_TRUE(at::equal(start, mid)) << item.key() << " changed while frozen";
            ++frozen;
        } else {
            EXPECT_FALSE(at::equal(start, mid)) << item.key() << " did not train in stage 1";
            ++trained;
        }
        EXPECT_FALSE(at::equal(start, end)) << item.key() << " did not train in stage 2";
    }
    EXPECT_EQ(trained, 5u);
    EXPECT_GT(frozen, 10u);
    // The optimizer kept no state for frozen parameters during stage 1.
    const auto optimizer_step4 = core::load_checkpoint(dir("a") / "checkpoints" / "step-4",
                                                       core::CheckpointParts::kModelAndOptimizer);
    EXPECT_EQ(optimizer_step4.state.parameter_steps->size(), 5u);
    EXPECT_EQ(optimizer_step4.state.parameter_steps->at("final_norm.weight"), 4);
    EXPECT_EQ(optimizer_step4.optimizer.count("exp_avg/embedding"), 0u);
    const auto optimizer_step8 = core::load_checkpoint(dir("a") / "checkpoints" / "step-8",
                                                       core::CheckpointParts::kModelAndOptimizer);
    EXPECT_EQ(optimizer_step8.state.parameter_steps->at("final_norm.weight"), 8);
    EXPECT_EQ(optimizer_step8.state.parameter_steps->at("embedding"), 2);
}

TEST_F(StagedRun, ResumingInsideTheSecondStageGivesABitIdenticalLossCurve) {
    ASSERT_EQ(moelab("run staged.toml --out whole").exit_code, 0);
    const CommandResult first = moelab("run staged.toml --out parts --stop-after 9");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    const CommandResult second = moelab("run staged.toml --out parts --resume");
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_NE(second.out.find("stage 2/2 'all' (6 steps, resumed after 3)"), std::string::npos)
        << second.out;
    const auto whole = metrics_records(dir("whole"), "train");
    const auto parts = metrics_records(dir("parts"), "train");
    ASSERT_EQ(whole.size(), 12u);
    ASSERT_EQ(whole.size(), parts.size());
    for (std::size_t i = 0; i < whole.size(); ++i) {
        for (const char* key : {"step", "stage", "loss", "lm_loss", "grad_norm", "lr"}) {
            EXPECT_EQ(whole[i][key].dump(), parts[i][key].dump()) << key << " at step " << i + 1;
        }
    }
}

TEST_F(StagedRun, BadStageSettingsAreRecipeErrorsNamingTheKey) {
    std::ofstream(dir("typo.toml")) << "extends = \"staged.toml\"\n\n[[stage]]\nsteps = "
                                       "12\ntrainable = [\"layer0.atention.*\"]\n";
    const CommandResult typo = moelab("run typo.toml --out t");
    EXPECT_EQ(typo.exit_code, 2) << typo.err;
    EXPECT_NE(typo.err.find("stage[0].trainable: pattern \"layer0.atention.*\" matches no "
                            "parameter of the model (nearest: layer0.attention."),
              std::string::npos)
        << typo.err;

    const CommandResult steps = moelab("check staged.toml --set train.steps=100");
    EXPECT_EQ(steps.exit_code, 2);
    EXPECT_NE(steps.err.find("train.steps: is 100 but the [[stage]] tables add up to 12 steps"),
              std::string::npos)
        << steps.err;
    std::ofstream(dir("warmup.toml")) << "extends = \"staged.toml\"\n\n[[stage]]\nsteps = 12\n"
                                         "warmup_steps = 20\n";
    const CommandResult warmup = moelab("check warmup.toml");
    EXPECT_EQ(warmup.exit_code, 2);
    EXPECT_NE(warmup.err.find("stage[0].warmup_steps: is 20, longer than the stage's 12 steps"),
              std::string::npos)
        << warmup.err;
}

}  // namespace
}  // namespace moelab::tests

// `moelab run` with [[stage]] tables end to end: frozen parameters stay bit-identical to their
// initialisation, the metrics say what each stage trains, resuming inside stage 2 gives the same
// loss curve bit for bit, and bad stage settings are recipe errors naming the key.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/assembly/loaded_recipe.h"
#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/recipe_loader.h"
#include "core/data/mixture_batcher.h"
#include "core/model/model_assembly.h"
#include "core/model/seeds.h"
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

// Note [Stages]: a stage that changes the RoPE base, the context and the batch, as ABF's
// multi-stage schedule does. Stage 2's first step must be the model of stage 1's weights with stage
// 2's base, on the first batch of a new pass at the new length; stage 3 returns to the run's base
// and batch size and reads on in stage 2's pass.
class ContextStages : public StagedRun {
  protected:
    ContextStages() {
        std::ofstream(dir("context.toml"))
            << "extends = \"" << (fs::path(MOELAB_SOURCE_DIR) / "tests/recipes/tiny.toml").string()
            << "\"\n\n[[stage]]\nname = \"short\"\nsteps = 4\n\n"
               "[[stage]]\nname = \"long\"\nsteps = 4\nseq_len = 32\nbatch_size = 2\n\n"
               "[stage.attention]\nbase = 2.0\n\n"
               "[[stage]]\nname = \"long, run's base\"\nsteps = 4\nseq_len = 32\n";
    }

    // lm_loss of `rows` sequences of 32 tokens after the first `skip` of the pass that stage 2
    // starts, by the model of `step_dir`'s weights with RoPE base `base`, computed here from the
    // recipe's own pieces.
    double loss_in_stage2_pass(const fs::path& step_dir, double base, int skip, int rows) {
        const fs::path cwd = fs::current_path();
        fs::current_path(corpus_.root());  // the recipe names its corpus relative to it
        const auto loaded = core::load_and_resolve(
            (dir("a") / "recipe.resolved.toml").string(),
            {"train.device=\"cpu\"", fmt::format("attention.base={:.1f}", base)});
        // The checkpoint's stage's recipe, with the base given on the command line.
        const core::TrainedModel trained(loaded->resolved, dir("a"), step_dir,
                                         core::DeviceChoice::kCpu, [](const std::string&) {});
        fs::current_path(cwd);
        const core::SourceTokens& source = trained.dataset().sources().front();
        core::MixtureBatcher batcher({{source.name, 1.0, source.tokens(core::Split::kTrain)}}, 32,
                                     1, core::derive_seed(3, "data.stage", 1));
        for (int i = 0; i < skip; ++i) batcher.next();
        std::vector<at::Tensor> sequences;
        for (int i = 0; i < rows; ++i) sequences.push_back(batcher.next().tokens);
        const core::TokenBatch batch{at::cat(sequences), at::Tensor()};
        torch::NoGradGuard no_grad;
        const at::Tensor logits = trained.model().forward(batch.inputs(), {}).logits;
        return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                      batch.targets().reshape({-1}))
            .item<double>();
    }
};

TEST_F(ContextStages, AStageTrainsTheModelOfItsOwnBaseAtItsOwnLengthFromThePreviousWeights) {
    const CommandResult run = moelab("run context.toml --out a");
    ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
    EXPECT_NE(run.out.find("stage 2/3 'long' (4 steps): 29120 of 29120 parameters trainable "
                           "(100%, 20 of 20 tensors); attention.base = 2.0, seq_len = 32, "
                           "batch_size = 2"),
              std::string::npos)
        << run.out;
    // Back to the run's base: said, although the stage itself sets no attention options.
    EXPECT_NE(run.out.find("(100%, 20 of 20 tensors); attention.base = 10000.0, batch_size = 4\n"),
              std::string::npos)
        << run.out;
    const auto stages = metrics_records(dir("a"), "stage");
    ASSERT_EQ(stages.size(), 3u);
    EXPECT_EQ(stages[0]["seq_len"], 16);
    EXPECT_EQ(stages[1]["seq_len"], 32);
    EXPECT_EQ(stages[1]["changes"].dump(),
              R"(["attention.base = 2.0","seq_len = 32","batch_size = 2"])");
    EXPECT_EQ(stages[2]["changes"].dump(), R"(["attention.base = 10000.0","batch_size = 4"])");
    const auto train = metrics_records(dir("a"), "train");
    ASSERT_EQ(train.size(), 12u);
    // 4 sequences of 16 tokens a step in stage 1, 2 of 32 in stage 2, 4 of 32 in stage 3.
    EXPECT_EQ(train[3]["tokens"], 4 * 4 * 16);
    EXPECT_EQ(train[4]["tokens"], 4 * 4 * 16 + 2 * 32);
    EXPECT_EQ(train[8]["tokens"], 4 * 4 * 16 + 4 * 2 * 32 + 4 * 32);

    // Step 5's loss is the forward pass of step 4's weights under base 2 on the new pass's first
    // two sequences, and not the same under the run's base 10000. Step 9's is step 8's weights
    // under the run's base on the pass's sequences 8 to 11: stage 3 reads on.
    const double step5 = train[4]["lm_loss"].get<double>();
    const double with_stage_base = loss_in_stage2_pass(dir("a") / "checkpoints/step-4", 2.0, 0, 2);
    const double with_run_base =
        loss_in_stage2_pass(dir("a") / "checkpoints/step-4", 10000.0, 0, 2);
    std::cout << std::setprecision(9) << "step 5 lm_loss " << step5 << ", base 2 "
              << with_stage_base << ", base 10000 " << with_run_base << "\n";
    // 4 steps of training leave position little weight: the bases differ by 1e-5 of the loss,
    // twenty times the agreement asked of the reproduction (the run's loss is chunked).
    EXPECT_NEAR(with_stage_base, step5, 5e-7 * step5);
    EXPECT_GT(std::abs(with_run_base - step5), 5e-6 * step5);
    const double step9 = train[8]["lm_loss"].get<double>();
    EXPECT_NEAR(loss_in_stage2_pass(dir("a") / "checkpoints/step-8", 10000.0, 8, 4), step9,
                5e-7 * step9);
}

TEST_F(ContextStages, EvaluationAssemblesTheModelOfTheStageThatTrainedTheCheckpoint) {
    ASSERT_EQ(moelab("run context.toml --out a").exit_code, 0);
    // step-8's weights come from stage 2 (base 2, 32 tokens); step-12's from stage 3. A --set
    // of the base asks it of this model, although the stage sets the base itself.
    const CommandResult at8 = moelab("eval a/checkpoints/step-8 --split validation --json");
    ASSERT_EQ(at8.exit_code, 0) << at8.err;
    const auto eval8 = nlohmann::json::parse(at8.out);
    const CommandResult base2 =
        moelab("eval a/checkpoints/step-8 --split validation --json --set attention.base=2.0");
    ASSERT_EQ(base2.exit_code, 0) << base2.err;
    const CommandResult base10k =
        moelab("eval a/checkpoints/step-8 --split validation --json --set attention.base=10000.0");
    ASSERT_EQ(base10k.exit_code, 0) << base10k.err;
    EXPECT_EQ(eval8["loss"], nlohmann::json::parse(base2.out)["loss"]);
    // At stage 2's length: 4 batches of 8 windows of 32 tokens.
    EXPECT_EQ(eval8["tokens"], 4 * 8 * 32);
    EXPECT_NE(eval8["loss"], nlohmann::json::parse(base10k.out)["loss"]);
}

TEST_F(ContextStages, ResumingAtAndAfterTheStageBoundaryGivesABitIdenticalLossCurve) {
    ASSERT_EQ(moelab("run context.toml --out whole").exit_code, 0);
    const auto whole = metrics_records(dir("whole"), "train");
    ASSERT_EQ(whole.size(), 12u);
    const auto whole_stages = metrics_records(dir("whole"), "stage");
    // At both boundaries (the second returns to the run's options and batch size within a pass
    // begun before it), and inside stages 2 and 3.
    for (const int stop : {4, 6, 8, 10}) {
        const std::string out = fmt::format("parts{}", stop);
        const CommandResult first =
            moelab(fmt::format("run context.toml --out {} --stop-after {}", out, stop));
        ASSERT_EQ(first.exit_code, 0) << first.err;
        const CommandResult second = moelab(fmt::format("run context.toml --out {} --resume", out));
        ASSERT_EQ(second.exit_code, 0) << second.err;
        const auto parts = metrics_records(dir(out), "train");
        ASSERT_EQ(whole.size(), parts.size());
        for (std::size_t i = 0; i < whole.size(); ++i) {
            for (const char* key :
                 {"step", "stage", "loss", "lm_loss", "grad_norm", "lr", "tokens"}) {
                EXPECT_EQ(whole[i][key].dump(), parts[i][key].dump())
                    << key << " at step " << i + 1 << " resuming after " << stop;
            }
        }
        // The stage entered on resuming says what changed as the uninterrupted run said it.
        const auto parts_stages = metrics_records(dir(out), "stage");
        ASSERT_FALSE(parts_stages.empty());
        const auto& resumed = parts_stages.back();
        const auto same =
            std::find_if(whole_stages.begin(), whole_stages.end(),
                         [&](const auto& s) { return s["stage"] == resumed["stage"]; });
        ASSERT_NE(same, whole_stages.end());
        for (const char* key : {"seq_len", "changes"}) {
            EXPECT_EQ((*same)[key].dump(), resumed[key].dump())
                << key << " resuming after " << stop;
        }
    }
}

TEST_F(ContextStages, AStagesPluginOptionsAreCheckedWhereTheStageWritesThem) {
    auto check = [&](const std::string& name, const std::string& stage_text) {
        std::ofstream(dir(name)) << "extends = \"staged.toml\"\n\n[[stage]]\nsteps = 12\n"
                                 << stage_text;
        return moelab("check " + name);
    };
    const CommandResult typo = check("typo.toml", "[stage.attention]\nbse = 100.0\n");
    EXPECT_EQ(typo.exit_code, 2);
    EXPECT_NE(typo.err.find("typo.toml:6:1: stage[0].attention.bse: unknown key in "
                            "[stage[0].attention] (did you mean 'base'?)"),
              std::string::npos)
        << typo.err;
    const CommandResult range = check("range.toml", "[stage.attention]\nbase = 0.5\n");
    EXPECT_EQ(range.exit_code, 2);
    EXPECT_NE(range.err.find("stage[0].attention.base"), std::string::npos) << range.err;
    const CommandResult plugin = check("plugin.toml", "[stage.attention]\nplugin = \"harpe\"\n");
    EXPECT_EQ(plugin.exit_code, 2);
    EXPECT_NE(plugin.err.find("stage[0].attention.plugin: a stage sets options of the run's "
                              "attention plugin; it cannot choose another one"),
              std::string::npos)
        << plugin.err;
    std::ofstream(dir("dense.toml"))
        << "[data]\ncorpus = \"corpus\"\nseq_len = 16\n\n[tokenizer]\nplugin = \"bytes\"\n\n"
           "[model]\nlayers = 2\nd_model = 32\nheads = 4\nd_ff = 64\n\n[attention]\n"
           "plugin = \"rope\"\n\n[[stage]]\nsteps = 4\n\n[stage.router]\nk = 1\n\n[train]\n"
           "warmup_steps = 1\n";
    const CommandResult no_router = moelab("check dense.toml");
    EXPECT_EQ(no_router.exit_code, 2);
    EXPECT_NE(no_router.err.find("dense.toml:20:1: stage[0].router: this model has no router to "
                                 "set options of (model.ffn is dense)"),
              std::string::npos)
        << no_router.err;
}

// A buffer computed from the options (the hash router's table) is the stage's own, not carried
// over from the stage before.
TEST_F(ContextStages, ARouterOptionsBufferFollowsTheStage) {
    std::ofstream(dir("hash.toml"))
        << "extends = \"" << (fs::path(MOELAB_SOURCE_DIR) / "tests/recipes/tiny.toml").string()
        << "\"\n\n[router]\nplugin = \"hash\"\nassignment = \"random\"\n\n[[stage]]\nsteps = 4\n\n"
           "[[stage]]\nsteps = 8\n\n[stage.router]\nassignment = \"balanced\"\n";
    ASSERT_EQ(moelab("run hash.toml --out staged").exit_code, 0);
    const CommandResult balanced =
        moelab("run hash.toml --out balanced --set router.assignment=balanced --stop-after 4");
    ASSERT_EQ(balanced.exit_code, 0) << balanced.err;
    auto tables = [&](const std::string& step_dir) {
        std::map<std::string, at::Tensor> out;
        for (const auto& [name, tensor] :
             core::load_checkpoint(dir(step_dir), core::CheckpointParts::kModel).model) {
            if (name.find("table") != std::string::npos) out.emplace(name, tensor);
        }
        return out;
    };
    const auto random = tables("staged/checkpoints/step-4");
    const auto after = tables("staged/checkpoints/step-12");
    const auto expected = tables("balanced/checkpoints/step-4");
    ASSERT_FALSE(expected.empty());
    for (const auto& [name, table] : expected) {
        EXPECT_TRUE(at::equal(after.at(name), table)) << name;
        EXPECT_FALSE(at::equal(random.at(name), table)) << name;
    }
}

// A stage's model takes the tensors of the model before it by name, so an option that changes
// them is refused before the first step, naming the stage and the tensors.
TEST_F(ContextStages, AStageThatWouldChangeTheModelsTensorsIsRefusedBeforeTraining) {
    // UniAttn with one reuse layer (layer 1, with its compensation W_c) and the given stages.
    auto run_uniattn = [&](const std::string& name, const std::string& stages) {
        std::ofstream(dir(name + ".toml"))
            << "extends = \"" << (fs::path(MOELAB_SOURCE_DIR) / "tests/recipes/tiny.toml").string()
            << "\"\n\n[attention]\nplugin = \"uniattn\"\ngroup_size = 2\nbegin = 0\n\n"
            << stages;
        return moelab("run " + name + ".toml --out " + name);
    };
    const CommandResult run =
        run_uniattn("uniattn",
                    "[[stage]]\nsteps = 6\n\n[[stage]]\nsteps = 6\n\n[stage.attention]\n"
                    "compensation = false\n");
    EXPECT_EQ(run.exit_code, 2) << run.err << run.out;
    EXPECT_NE(run.err.find("stage[1].attention: the stage's options change the model's tensors "
                           "(layer1.attention.w_compensation is gone)"),
              std::string::npos)
        << run.err;
    EXPECT_EQ(run.out.find("step  1/12"), std::string::npos) << run.out;

    // The other way round: the first stage sets the option, the last has the run's.
    const CommandResult first =
        run_uniattn("uniattn-first",
                    "[[stage]]\nsteps = 6\n\n[stage.attention]\ncompensation = false\n\n"
                    "[[stage]]\nsteps = 6\n");
    EXPECT_EQ(first.exit_code, 2) << first.err << first.out;
    EXPECT_NE(first.err.find("stage[1]: the stage's options change the model's tensors "
                             "(layer1.attention.w_compensation is new)"),
              std::string::npos)
        << first.err;
}

}  // namespace
}  // namespace moelab::tests

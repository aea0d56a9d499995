// Expert and data parallelism end to end (docs/parallel.md): `moelab launch` runs the tiny recipe
// in several processes over Gloo, and the run computes what one process computes: the same loss at
// every step (up to float32 summation order), a checkpoint any layout can evaluate and resume,
// and a job that fails as a whole, with the failing process's message, when one process fails.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/dist/launch_environment.h"
#include "support/run_files.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

// Float32 arithmetic in another order (row blocks, all-reduce of gradients) changes the last
// bits of each step; over 20 AdamW steps of the tiny model the losses stay within this (measured:
// at most 5e-7 apart at degree 2).
constexpr double kLossTolerance = 1e-5;

std::string tiny_recipe() {
    return shell_quote((fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml").string());
}

class ParallelRun : public ::testing::Test {
  protected:
    ParallelRun() : corpus_(6000) {}

    CommandResult moelab(const std::string& arguments, const std::string& environment = "") {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " + environment +
                           " " + shell_quote(MOELAB_BINARY) + " " + arguments);
    }

    // tiny.toml with another [router] (its topk option k removed).
    std::string recipe_with_router(const std::string& file, const std::string& plugin) const {
        std::ifstream in(fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml");
        std::stringstream text;
        text << in.rdbuf();
        std::string recipe = text.str();
        const std::string topk = "plugin = \"topk\"\nk = 2";
        recipe.replace(recipe.find(topk), topk.size(), "plugin = \"" + plugin + "\"");
        std::ofstream(corpus_.root() / file) << recipe;
        return file;
    }

    std::vector<double> losses(const std::string& run) const {
        std::vector<double> out;
        for (const auto& record : metrics_records(corpus_.root() / run, "train")) {
            out.push_back(record.at("loss").get<double>());
        }
        return out;
    }

    nlohmann::json summary(const std::string& run) const {
        return read_json_file(corpus_.root() / run / "summary.json");
    }

    static void expect_same_curve(const std::vector<double>& a, const std::vector<double>& b) {
        ASSERT_EQ(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            EXPECT_NEAR(a[i], b[i], kLossTolerance) << "step " << i + 1;
        }
    }

    TestCorpus corpus_;
};

const std::string kSteps = " --set train.steps=20 --set train.eval_every=0";

TEST_F(ParallelRun, ExpertDegreeTwoTrainsLikeOneProcess) {
    const CommandResult one = moelab("run " + tiny_recipe() + " --out one" + kSteps);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const CommandResult two = moelab("launch -n 2 -- run " + tiny_recipe() + " --out two" + kSteps +
                                     " --set parallel.expert=2");
    ASSERT_EQ(two.exit_code, 0) << two.err << two.out;
    expect_same_curve(losses("one"), losses("two"));
    EXPECT_NEAR(summary("one")["validation"]["loss"].get<double>(),
                summary("two")["validation"]["loss"].get<double>(), kLossTolerance);
    // Statistics and parameter counts are the whole model's, not one process's.
    EXPECT_EQ(summary("one")["parameters"], summary("two")["parameters"]);
    const auto records = metrics_records(corpus_.root() / "two", "train");
    EXPECT_EQ(records.back()["moe"]["layer0"]["banks"]["experts"]["tokens_per_expert"],
              metrics_records(corpus_.root() / "one", "train")
                  .back()["moe"]["layer0"]["banks"]["experts"]["tokens_per_expert"]);
    EXPECT_TRUE(records.back().contains("parallel_s"));
    const auto run = metrics_records(corpus_.root() / "two", "run").at(0);
    EXPECT_EQ(run["parallel"]["processes"], 2);
    EXPECT_EQ(run["parallel"]["expert_degree"], 2);

    // Each process wrote its own experts (Note [Expert shards]); one process reads them all back
    // and evaluates the checkpoint to the run's own loss.
    const fs::path step = corpus_.root() / "two" / "checkpoints" / "step-20";
    EXPECT_TRUE(fs::exists(step / "model-00002-of-00002.safetensors"));
    EXPECT_TRUE(fs::exists(step / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(step / "model.safetensors"));
    const CommandResult eval = moelab("eval two --json");
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    EXPECT_NEAR(nlohmann::json::parse(eval.out)["loss"].get<double>(),
                summary("two")["validation"]["loss"].get<double>(), 1e-5);
}

// An evaluation batch of one sequence: the second process holds none of its rows and still
// serves its experts to the first; the loss and the experts' statistics are one process's.
TEST_F(ParallelRun, EvaluationBatchesSmallerThanTheJob) {
    const std::string small = kSteps + " --set train.steps=4 --set eval.batch_size=1";
    const CommandResult one = moelab("run " + tiny_recipe() + " --out one" + small);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const CommandResult two = moelab("launch -n 2 -- run " + tiny_recipe() + " --out two" + small +
                                     " --set parallel.expert=2");
    ASSERT_EQ(two.exit_code, 0) << two.err;
    EXPECT_NEAR(summary("one")["validation"]["loss"].get<double>(),
                summary("two")["validation"]["loss"].get<double>(), kLossTolerance);
    EXPECT_EQ(summary("one")["validation_moe"]["layer0"]["banks"]["experts"]["tokens_per_expert"],
              summary("two")["validation_moe"]["layer0"]["banks"]["experts"]["tokens_per_expert"]);
}

TEST_F(ParallelRun, ResumesUnderAnotherDegree) {
    const CommandResult one = moelab("run " + tiny_recipe() + " --out one" + kSteps);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    // Degree 2 for the first half, degree 1 in one process for the rest, and back the other way.
    const CommandResult first =
        moelab("launch -n 2 -- run " + tiny_recipe() + " --out mixed --stop-after 10" + kSteps +
               " --set parallel.expert=2");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    const CommandResult rest = moelab("run " + tiny_recipe() + " --out mixed --resume" + kSteps);
    ASSERT_EQ(rest.exit_code, 0) << rest.err;
    expect_same_curve(losses("one"), losses("mixed"));

    const CommandResult start =
        moelab("run " + tiny_recipe() + " --out back --stop-after 10" + kSteps);
    ASSERT_EQ(start.exit_code, 0) << start.err;
    const CommandResult finish =
        moelab("launch -n 2 -- run " + tiny_recipe() + " --out back --resume" + kSteps +
               " --set parallel.expert=2");
    ASSERT_EQ(finish.exit_code, 0) << finish.err;
    expect_same_curve(losses("one"), losses("back"));
}

TEST_F(ParallelRun, FourProcessesExpertDegreeTwoWithDataParallelism) {
    const CommandResult one = moelab("run " + tiny_recipe() + " --out one" + kSteps);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const CommandResult four = moelab("launch -n 4 -- run " + tiny_recipe() + " --out four" +
                                      kSteps + " --set parallel.expert=2");
    ASSERT_EQ(four.exit_code, 0) << four.err;
    expect_same_curve(losses("one"), losses("four"));
}

TEST_F(ParallelRun, TorchrunsEnvironmentStartsTheSameJob) {
    // What `torchrun --no-python --nproc-per-node 2 moelab run ...` gives each worker.
    const CommandResult launched = moelab("launch -n 2 -- run " + tiny_recipe() + " --out a" +
                                          kSteps + " --set parallel.expert=2");
    ASSERT_EQ(launched.exit_code, 0) << launched.err;
    const std::string common = " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                               std::to_string(core::free_loopback_port()) + " ";
    const std::string command = shell_quote(MOELAB_BINARY) + " run " + tiny_recipe() + " --out b" +
                                kSteps + " --set parallel.expert=2";
    const CommandResult both = run_command(
        "cd " + shell_quote(corpus_.root().string()) + " && (env RANK=1 LOCAL_RANK=1" + common +
        command + " > rank1.log 2>&1 &) && env RANK=0 LOCAL_RANK=0" + common + command);
    ASSERT_EQ(both.exit_code, 0) << both.err;
    expect_same_curve(losses("a"), losses("b"));
}

TEST_F(ParallelRun, AFailingProcessEndsTheJobWithItsMessage) {
    recipe_with_router("fault.toml", "rank-fault-router");
    const auto start = std::chrono::steady_clock::now();
    const CommandResult job = moelab(
        "launch -n 2 -- run fault.toml --out fault --set parallel.expert=2 --set train.steps=20",
        "MOELAB_PLUGIN_PATH=" +
            shell_quote((fs::path(MOELAB_FIXTURE_DIR) / "rank_fault_router").string()));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(job.exit_code, 1) << job.err;
    EXPECT_NE(job.err.find("[rank 1]"), std::string::npos) << job.err;
    EXPECT_NE(job.err.find("the job failed because rank 1 failed: "), std::string::npos) << job.err;
    EXPECT_NE(job.err.find("failing on purpose in rank 1"), std::string::npos) << job.err;
    EXPECT_LT(seconds, 60.0);  // no process waits for the dead one (start-up included)
}

TEST_F(ParallelRun, LayoutsThatCannotWorkAreUsageErrors) {
    const CommandResult alone = moelab("run " + tiny_recipe() + " --out x --set parallel.expert=2");
    EXPECT_EQ(alone.exit_code, 2);
    EXPECT_NE(alone.err.find("parallel.expert"), std::string::npos) << alone.err;
    EXPECT_NE(alone.err.find("moelab launch"), std::string::npos) << alone.err;

    const CommandResult uneven = moelab("check " + tiny_recipe() + " --set parallel.expert=3");
    EXPECT_EQ(uneven.exit_code, 2);
    EXPECT_NE(uneven.err.find("must divide [moe] experts = 4"), std::string::npos) << uneven.err;

    // DSMoE trains with every expert on every token (run_all): it does not list the feature.
    const CommandResult dense_compute =
        moelab("check " + recipe_with_router("dsmoe.toml", "dsmoe") + " --set parallel.expert=2");
    EXPECT_EQ(dense_compute.exit_code, 2);
    EXPECT_NE(dense_compute.err.find("parallel.sharded_experts"), std::string::npos)
        << dense_compute.err;

    const CommandResult odd_batch =
        moelab("launch -n 3 -- run " + tiny_recipe() + " --out y --set train.steps=2");
    EXPECT_EQ(odd_batch.exit_code, 2) << odd_batch.err;
    EXPECT_NE(odd_batch.err.find("train.batch_size"), std::string::npos) << odd_batch.err;
}

}  // namespace
}  // namespace moelab::tests

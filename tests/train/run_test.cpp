// `moelab run` and `moelab eval` end to end on a tiny recipe: the run directory's contents,
// bit-identical resumption, evaluation reproducing the summary, divergence handling that keeps the
// last good checkpoint, and errors a user can act on.

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/system/hash.h"
#include "support/run_files.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

std::string tiny_recipe() {
    return shell_quote((fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml").string());
}

class TinyRun : public ::testing::Test {
  protected:
    TinyRun() : corpus_(6000) {}

    CommandResult moelab(const std::string& arguments, const std::string& environment = "") {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " + environment +
                           " " + shell_quote(MOELAB_BINARY) + " " + arguments);
    }

    fs::path dir(const std::string& name) const { return corpus_.root() / name; }

    std::vector<nlohmann::json> records(const std::string& run, const std::string& type) const {
        return metrics_records(dir(run), type);
    }

    nlohmann::json read_json(const fs::path& file) const { return read_json_file(file); }

    // dense.toml in the run directory: the tiny recipe with dense FFNs and no [router] (which
    // --set cannot remove).
    void write_dense_recipe() const {
        std::ifstream in(fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml");
        std::stringstream text;
        text << in.rdbuf();
        std::string dense = text.str();
        dense = dense.substr(0, dense.find("[router]")) + dense.substr(dense.find("[train]"));
        dense.replace(dense.find("ffn = \"moe\""), 11, "ffn = \"dense\"");
        std::ofstream(dir("dense.toml")) << dense;
    }

    TestCorpus corpus_;
};

TEST_F(TinyRun, LeavesEverythingARunNeedsInItsDirectory) {
    const CommandResult run = moelab("run " + tiny_recipe() + " --out a");
    ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
    for (const char* file : {"recipe.resolved.toml", "tokenizer.txt", "metrics.jsonl",
                             "summary.json", "checkpoints/latest", "checkpoints/step-12"}) {
        EXPECT_TRUE(fs::exists(dir("a") / file)) << file;
    }
    // Progress lines when stdout is not a terminal.
    EXPECT_NE(run.out.find("step 12/12 | loss"), std::string::npos) << run.out;
    EXPECT_NE(run.out.find("tok/s | MFU "), std::string::npos) << run.out;

    const auto run_records = records("a", "run");
    ASSERT_EQ(run_records.size(), 1u);
    const nlohmann::json& first = run_records[0];
    EXPECT_EQ(first["device"], "cpu");  // the resolved device, by name
    EXPECT_EQ(first["dtype"], "float32");
    EXPECT_EQ(first["plugins"].size(), 3u);
    for (const auto& plugin : first["plugins"]) {
        EXPECT_FALSE(plugin["version"].get<std::string>().empty());
        EXPECT_FALSE(plugin["fingerprint"].get<std::string>().empty());
    }
    const auto train = records("a", "train");
    ASSERT_EQ(train.size(), 12u);
    const nlohmann::json& bank = train.back()["moe"]["layer0"]["banks"]["experts"];
    for (const char* key :
         {"tokens_per_expert", "load_imbalance", "cv", "dead_fraction", "dropped_fraction"}) {
        EXPECT_TRUE(bank.contains(key)) << key;
    }
    EXPECT_EQ(bank["tokens_per_expert"].size(), 4u);
    EXPECT_TRUE(train.back()["moe"]["layer0"]["routers"][0].contains("entropy"));
    EXPECT_TRUE(train.back()["moe"]["layer1"]["aux"].contains("balance"));
    for (const char* key : {"loss", "lm_loss", "aux_loss", "lr", "grad_norm", "tokens",
                            "tokens_per_s", "elapsed_s"}) {
        EXPECT_TRUE(train.back().contains(key)) << key;
    }
    EXPECT_EQ(train.back()["tokens"], 12 * 4 * 16);
    // Note [Model FLOPs], by hand for this model (d 32, 4 heads, 2 layers, 4 experts of 16, top-2,
    // 257 byte ids, tied head, 16 tokens): per layer attention 2*32*128 + 128*8.5 = 9280, router
    // 2*4*32 = 256, two experts 2*2*(3*32*16) = 6144; head 2*257*32 = 16448; training 3 x forward.
    EXPECT_DOUBLE_EQ(train.back()["model_flops_per_token"].get<double>(),
                     3.0 * (2 * (9280 + 256 + 6144) + 16448));
    const double peak = first["gemm_peak"]["gflops"].get<double>();
    EXPECT_DOUBLE_EQ(train.back()["achieved_gflops"].get<double>(),
                     train.back()["tokens_per_s"].get<double>() *
                         train.back()["model_flops_per_token"].get<double>() / 1e9);
    EXPECT_DOUBLE_EQ(train.back()["mfu"].get<double>(),
                     train.back()["achieved_gflops"].get<double>() / peak);

    const nlohmann::json summary = read_json(dir("a") / "summary.json");
    EXPECT_EQ(summary["steps"], 12);
    EXPECT_GT(summary["validation"]["ppl"].get<double>(), 1.0);
    EXPECT_GT(summary["validation"]["unigram_ppl"].get<double>(), 1.0);
    EXPECT_GT(summary["test"]["ppl"].get<double>(), 1.0);
    const double total = summary["parameters"]["total"];
    const double active = summary["parameters"]["active"];
    const double expert = summary["parameters"]["expert"];
    // top-2 of 4 experts: half of the expert parameters are active.
    EXPECT_NEAR(active, total - expert / 2, 1.0);
    const nlohmann::json& throughput = summary["throughput"];
    EXPECT_DOUBLE_EQ(throughput["model_flops_per_token"].get<double>(),
                     train.back()["model_flops_per_token"].get<double>());
    EXPECT_DOUBLE_EQ(throughput["gemm_peak_gflops"].get<double>(), peak);
    // Peak resident memory against the kernel's own account of this test's children, which here
    // are the run alone: the run's figure is its maximum up to the summary, the kernel's up to
    // exit.
    struct rusage children {};
    ASSERT_EQ(::getrusage(RUSAGE_CHILDREN, &children), 0);
    const double kernel_mib = static_cast<double>(children.ru_maxrss) / 1024.0;
    const double peak_mib = summary["peak_rss_mib"].get<double>();
    EXPECT_LE(peak_mib, kernel_mib);
    EXPECT_GE(peak_mib, 0.9 * kernel_mib);
    EXPECT_LE(train.back()["peak_rss_mib"].get<double>(), peak_mib);
    EXPECT_NEAR(throughput["mfu"].get<double>(),
                throughput["training_tokens_per_second"].get<double>() *
                    throughput["model_flops_per_token"].get<double>() / 1e9 / peak,
                1e-12);
}

TEST_F(TinyRun, AProfiledRunSplitsItsStepsByPhaseAndOperatorFamily) {
    const CommandResult run =
        moelab("run " + tiny_recipe() + " --out p --profile --set train.steps=6");
    ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
    EXPECT_NE(run.out.find("profile of 4 steps after 2 warm-up steps"), std::string::npos)
        << run.out;
    const nlohmann::json profile = read_json(dir("p") / "profile.json");
    EXPECT_EQ(profile["steps"], 4);
    EXPECT_EQ(profile["last_step"], 6);
    EXPECT_EQ(profile["tokens_per_step"].get<double>(), 4 * 16);  // batch 4 of 16 tokens
    const double step = profile["step_seconds"].get<double>();
    double rows = 0, phases = 0;
    std::map<std::string, nlohmann::json> by_name;
    for (const auto& row : profile["breakdown"]) {
        rows += row["seconds"].get<double>();
        by_name[row["name"].get<std::string>()] = row;
    }
    for (const auto& [name, seconds] : profile["phases_seconds"].items()) {
        phases += seconds.get<double>();
    }
    EXPECT_NEAR(rows, step, 1e-9 * step);
    EXPECT_NEAR(phases, step, 1e-9 * step);
    // Every layer of the tiny model is a MoE layer in one process: the families it has take
    // forward and backward time, the ones it has not take none.
    for (const char* family : {"attention", "router", "experts", "norms and elementwise",
                               "lm head and loss", "embedding"}) {
        EXPECT_GT(by_name.at(family)["forward_seconds"].get<double>(), 0) << family;
        EXPECT_GT(by_name.at(family)["backward_seconds"].get<double>(), 0) << family;
    }
    for (const char* family : {"dense ffn", "expert exchange"}) {
        EXPECT_EQ(by_name.at(family)["seconds"].get<double>(), 0) << family;
    }
    EXPECT_GT(by_name.at("optimizer")["other_seconds"].get<double>(), 0);
}

// Note [Operator profile]: the operators of the profiled steps alone, by self time.
TEST_F(TinyRun, AnOperatorProfileNamesTheOperatorsOfTheProfiledSteps) {
    const CommandResult run = moelab("run " + tiny_recipe() +
                                     " --out o --profile-operators --set train.steps=6 "
                                     "--set train.eval_every=3");
    ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
    EXPECT_NE(run.out.find("operators of the profiled steps, by self time"), std::string::npos)
        << run.out;
    const nlohmann::json profile = read_json(dir("o") / "profile.json");
    const nlohmann::json operators = read_json(dir("o") / "operators.json");
    EXPECT_EQ(operators["steps"], 4);
    // The same spans as the step profile's steps: the evaluation at step 3 is not in them.
    const double steps_seconds = 4 * profile["step_seconds"].get<double>();
    const double recorded = operators["seconds"].get<double>();
    EXPECT_GT(recorded, 0.8 * steps_seconds);
    EXPECT_LT(recorded, 1.25 * steps_seconds);
    double self = 0, previous = 1e300;
    std::map<std::string, std::int64_t> calls;
    for (const auto& row : operators["operators"]) {
        const double row_self = row["self_seconds"].get<double>();
        EXPECT_LE(row_self, previous);  // largest first
        previous = row_self;
        self += row_self;
        calls[row["name"].get<std::string>()] = row["calls"].get<std::int64_t>();
    }
    EXPECT_LE(self, recorded);
    EXPECT_GT(calls["aten::mm"], 0);
    // The host's fused kernels, named although no operator runs inside them.
    EXPECT_GT(calls["moelab::causal_attention"], 0);
    EXPECT_GT(calls["moelab::rms_norm"], 0);
    EXPECT_GT(calls["moelab::adamw_step"], 0);
    EXPECT_GT(calls["moelab::grouped_swiglu"], 0);
}

TEST_F(TinyRun, ResumingGivesABitIdenticalLossCurve) {
    // Router jitter draws from the random generator: its state must be restored too.
    const std::string recipe = tiny_recipe() + " --set router.jitter=0.1";
    ASSERT_EQ(moelab("run " + recipe + " --out whole").exit_code, 0);
    const CommandResult first = moelab("run " + recipe + " --out parts --stop-after 6");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_FALSE(fs::exists(dir("parts") / "summary.json"));
    const CommandResult second = moelab("run " + recipe + " --out parts --resume");
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_NE(second.out.find("resumed from"), std::string::npos);

    const auto whole = records("whole", "train");
    const auto parts = records("parts", "train");
    ASSERT_EQ(whole.size(), parts.size());
    for (std::size_t i = 0; i < whole.size(); ++i) {
        for (const char* key :
             {"step", "loss", "lm_loss", "aux_loss", "grad_norm", "lr", "tokens"}) {
            EXPECT_EQ(whole[i][key].dump(), parts[i][key].dump()) << key << " at step " << i + 1;
        }
        EXPECT_EQ(whole[i]["moe"].dump(), parts[i]["moe"].dump()) << "step " << i + 1;
    }
    EXPECT_EQ(read_json(dir("whole") / "summary.json")["validation"]["ppl"].dump(),
              read_json(dir("parts") / "summary.json")["validation"]["ppl"].dump());
}

// Note [Recipe hash across plugin versions]: a run trained before its router gained an option (here
// topk's z_loss_coef, taken out of the stored recipe and out of the checkpoint's hash, as an older
// topk would have written them) resumes with today's plugins, whose default is the old behaviour;
// a real change of the recipe is still refused.
TEST_F(TinyRun, ARunFromBeforeAPluginGainedAnOptionResumes) {
    ASSERT_EQ(moelab("run " + tiny_recipe() + " --out old --stop-after 4").exit_code, 0);
    const fs::path stored = dir("old") / "recipe.resolved.toml";
    std::string text = read_text(stored);
    const std::string option = "z_loss_coef = 0.0\n";
    ASSERT_NE(text.find(option), std::string::npos) << text;
    text.erase(text.find(option), option.size());
    std::ofstream(stored) << text;
    const std::string old_hash = core::ContentHash().add(text.substr(text.find('\n') + 1)).hex();
    const fs::path state_file = dir("old") / "checkpoints" / "step-4" / "state.json";
    nlohmann::json state = read_json(state_file);
    state["recipe_hash"] = old_hash;
    std::ofstream(state_file) << state.dump(2);

    const CommandResult changed =
        moelab("run " + tiny_recipe() + " --out old --resume --set train.lr_peak=0.002");
    EXPECT_EQ(changed.exit_code, 2) << changed.err;
    EXPECT_NE(changed.err.find("the recipe differs"), std::string::npos) << changed.err;
    const CommandResult resumed = moelab("run " + tiny_recipe() + " --out old --resume");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_NE(
        (resumed.out + resumed.err).find("was trained before moelab or a plugin gained options"),
        std::string::npos)
        << resumed.out << resumed.err;
    EXPECT_NE(resumed.out.find("step 12/12"), std::string::npos) << resumed.out;
}

// Switching the expert kernel changes the order of floating-point operations only: the two
// kernels agree to fp32 rounding per call (tests/kernels), and over the 12 steps of training the
// loss curves stay within 1e-4 of each other.
TEST_F(TinyRun, SwitchingTheExpertKernelKeepsTheLossCurve) {
    ASSERT_EQ(moelab("run " + tiny_recipe() + " --out grouped --set moe.kernel=grouped").exit_code,
              0);
    const CommandResult reference =
        moelab("run " + tiny_recipe() + " --out reference --set moe.kernel=reference");
    ASSERT_EQ(reference.exit_code, 0) << reference.err;
    const auto grouped_steps = records("grouped", "train");
    const auto reference_steps = records("reference", "train");
    ASSERT_EQ(grouped_steps.size(), reference_steps.size());
    ASSERT_FALSE(grouped_steps.empty());
    for (std::size_t i = 0; i < grouped_steps.size(); ++i) {
        EXPECT_NEAR(grouped_steps[i]["loss"].get<double>(),
                    reference_steps[i]["loss"].get<double>(), 1e-4)
            << "step " << i + 1;
    }
}

TEST_F(TinyRun, EvalReproducesTheSummaryPerplexity) {
    ASSERT_EQ(moelab("run " + tiny_recipe() + " --out a").exit_code, 0);
    const nlohmann::json summary = read_json(dir("a") / "summary.json");
    for (const char* split : {"validation", "test"}) {
        const CommandResult eval = moelab(std::string("eval a --json --split ") + split);
        ASSERT_EQ(eval.exit_code, 0) << eval.err;
        const nlohmann::json report = nlohmann::json::parse(eval.out);
        EXPECT_DOUBLE_EQ(report["ppl"].get<double>(), summary[split]["ppl"].get<double>());
        EXPECT_EQ(report["tokens"], summary[split]["tokens"]);
    }
    const CommandResult text = moelab("eval a/checkpoints/step-12");
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find("routing statistics per MoE layer"), std::string::npos) << text.out;
    // The robustness probe runs and changes the result.
    const CommandResult probe = moelab("eval a --json --disable-top-experts 1");
    ASSERT_EQ(probe.exit_code, 0) << probe.err;
    EXPECT_NE(nlohmann::json::parse(probe.out)["ppl"].get<double>(),
              summary["validation"]["ppl"].get<double>());
}

TEST_F(TinyRun, DivergenceStopsTheRunAndKeepsTheLastGoodCheckpoint) {
    const std::string env =
        "MOELAB_PLUGIN_PATH=" + shell_quote((fs::path(MOELAB_FIXTURE_DIR) / "nan_router").string());
    const CommandResult run = moelab("run " + tiny_recipe() +
                                         " --out nan --set router.plugin=nan-router "
                                         "--set train.checkpoint_every=2",
                                     env);
    EXPECT_EQ(run.signal, 0);
    EXPECT_EQ(run.exit_code, 1) << run.err;
    EXPECT_NE(run.err.find("training diverged at step 4"), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("step-2"), std::string::npos) << run.err;
    std::ifstream latest(dir("nan") / "checkpoints" / "latest");
    std::string name;
    latest >> name;
    EXPECT_EQ(name, "step-2");
    const auto errors = records("nan", "error");
    ASSERT_EQ(errors.size(), 1u);
    // The kept checkpoint is usable.
    EXPECT_EQ(moelab("eval nan", env).exit_code, 0);
}

TEST_F(TinyRun, UnusableRunDirectoriesAreUsageErrors) {
    ASSERT_EQ(moelab("run " + tiny_recipe() + " --out a --stop-after 2").exit_code, 0);
    const CommandResult again = moelab("run " + tiny_recipe() + " --out a");
    EXPECT_EQ(again.exit_code, 2);
    EXPECT_NE(again.err.find("already holds a run"), std::string::npos) << again.err;
    const CommandResult changed =
        moelab("run " + tiny_recipe() + " --out a --resume --set train.lr_peak=0.002");
    EXPECT_EQ(changed.exit_code, 2);
    EXPECT_NE(changed.err.find("the recipe differs"), std::string::npos) << changed.err;
    const CommandResult nothing = moelab("run " + tiny_recipe() + " --out empty --resume");
    EXPECT_EQ(nothing.exit_code, 2);
    EXPECT_NE(nothing.err.find("no run to resume"), std::string::npos) << nothing.err;
    EXPECT_EQ(moelab("run " + tiny_recipe() + " --resume").exit_code, 2);
}

TEST_F(TinyRun, AThrowingRouterFactoryIsARuntimeErrorNamingThePlugin) {
    const std::string env =
        "MOELAB_PLUGIN_PATH=" +
        shell_quote((fs::path(MOELAB_FIXTURE_DIR) / "throwing_factory").string());
    const CommandResult run =
        moelab("run " + tiny_recipe() + " --out t --set router.plugin=exploding-router", env);
    EXPECT_EQ(run.signal, 0);
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_NE(run.err.find("plugin 'throwing'"), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("factory exploded"), std::string::npos) << run.err;
}

TEST_F(TinyRun, TrainsOnCudaInBfloat16LikeOnTheCpu) {
    const CommandResult probe = moelab("--version");
    if (probe.out.find("CUDA devices visible: 0") != std::string::npos) {
        GTEST_SKIP() << "no CUDA device";
    }
    const CommandResult gpu = moelab(
        "run " + tiny_recipe() + " --out gpu --set train.device=cuda --set model.dtype=bfloat16");
    ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
    const CommandResult cpu = moelab("run " + tiny_recipe() + " --out cpu --set train.device=cpu");
    ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
    const auto first = records("gpu", "run")[0];
    EXPECT_EQ(first["device"], "cuda");
    EXPECT_EQ(first["dtype"], "bfloat16");
    // It learns: the loss falls well below its start (about 5.6 nats per byte for this recipe).
    const auto train = records("gpu", "train");
    EXPECT_LT(train.back()["lm_loss"].get<double>(), train.front()["lm_loss"].get<double>() - 0.5);
    // Same model, same data, same schedule: bf16 on the GPU ends within a few percent of fp32 on
    // the CPU.
    const double gpu_ppl = read_json(dir("gpu") / "summary.json")["validation"]["ppl"];
    const double cpu_ppl = read_json(dir("cpu") / "summary.json")["validation"]["ppl"];
    EXPECT_NEAR(gpu_ppl / cpu_ppl, 1.0, 0.05) << "gpu " << gpu_ppl << " cpu " << cpu_ppl;
    const CommandResult eval = moelab("eval gpu --json");
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    EXPECT_NEAR(nlohmann::json::parse(eval.out)["ppl"].get<double>(), gpu_ppl, 1e-6 * gpu_ppl);
}

TEST_F(TinyRun, ModelAndTrainingOptionsTakeEffect) {
    // Untied head, grouped-query attention, gradient accumulation, a shared expert, capacity
    // dropping, top-k-then-softmax routing with a z-loss, every other layer MoE.
    const CommandResult run = moelab(
        "run " + tiny_recipe() +
        " --out opts --set train.steps=4 --set model.tie_embeddings=false --set model.kv_heads=2"
        " --set train.grad_accum=2 --set moe.shared_experts=1 --set moe.capacity_factor=0.5"
        " --set router.selection=topk_softmax --set router.z_loss_coef=0.001"
        " --set moe.first_layer=1 --set moe.interval=2");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const auto train = records("opts", "train");
    ASSERT_EQ(train.size(), 4u);
    EXPECT_EQ(train.back()["tokens"], 4 * 2 * 4 * 16) << "grad_accum micro-batches per step";
    const nlohmann::json& moe = train.back()["moe"];
    EXPECT_FALSE(moe.contains("layer0")) << "layer 0 is dense with first_layer = 1";
    ASSERT_TRUE(moe.contains("layer1"));
    EXPECT_TRUE(moe["layer1"]["banks"].contains("shared"));
    EXPECT_GT(moe["layer1"]["banks"]["experts"]["dropped_fraction"].get<double>(), 0.0);
    EXPECT_TRUE(moe["layer1"]["aux"].contains("z_loss"));
    // The untied head is a parameter of its own: vocab x d_model more than the tied model.
    const nlohmann::json summary = read_json(dir("opts") / "summary.json");
    const CommandResult tied =
        moelab("run " + tiny_recipe() +
               " --out tied --set train.steps=4 --set model.kv_heads=2 --set train.grad_accum=2"
               " --set moe.shared_experts=1 --set moe.capacity_factor=0.5"
               " --set router.selection=topk_softmax --set router.z_loss_coef=0.001"
               " --set moe.first_layer=1 --set moe.interval=2");
    ASSERT_EQ(tied.exit_code, 0) << tied.err;
    EXPECT_EQ(
        summary["parameters"]["total"].get<std::int64_t>() -
            read_json(dir("tied") / "summary.json")["parameters"]["total"].get<std::int64_t>(),
        257 * 32);
}

TEST_F(TinyRun, DenseModelsTrainToo) {
    const CommandResult run =
        moelab("run " + tiny_recipe() + " --out d --set model.ffn=dense --set train.steps=4");
    EXPECT_EQ(run.exit_code, 2) << "a [router] with a dense model is refused";
    write_dense_recipe();
    const CommandResult ok = moelab("run dense.toml --out d --set train.steps=4");
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    const nlohmann::json summary = read_json(dir("d") / "summary.json");
    EXPECT_EQ(summary["parameters"]["expert"], 0);
    EXPECT_EQ(summary["parameters"]["active"], summary["parameters"]["total"]);
}

TEST_F(TinyRun, ADenseRunConvertsExactlyIntoDsMoe) {
    write_dense_recipe();
    ASSERT_EQ(moelab("run dense.toml --out dense --set train.steps=4").exit_code, 0);
    // Partition the dense FFNs (d_ff 64) into 4 experts of 16; with every gate open at weight 1,
    // no rescale and a learning rate of 0, the converted model is the dense model.
    const std::string convert =
        "run " + tiny_recipe() +
        " --set router.plugin=dsmoe --set moe.experts=4 --set moe.d_ff_expert=16"
        " --set init.from=dense --set init.partition_ffn=4 --set router.force_open=true"
        " --set router.rescale=false --set router.sparsity_coef=0 --set train.steps=1"
        " --set train.warmup_steps=0 --set train.lr_peak=0 --set train.lr_min=0";
    const CommandResult converted = moelab(convert + " --out converted");
    ASSERT_EQ(converted.exit_code, 0) << converted.err << converted.out;
    EXPECT_NE(converted.out.find("2 dense FFNs split into 4 experts"), std::string::npos)
        << converted.out;
    const double dense_ppl = read_json(dir("dense") / "summary.json")["validation"]["ppl"];
    const double converted_ppl = read_json(dir("converted") / "summary.json")["validation"]["ppl"];
    EXPECT_NEAR(converted_ppl / dense_ppl, 1.0, 1e-5);

    // A partition that does not fit is a recipe error naming the key.
    const CommandResult uneven = moelab(convert + " --out uneven --set moe.d_ff_expert=8");
    EXPECT_EQ(uneven.exit_code, 2);
    EXPECT_NE(uneven.err.find("init.partition_ffn"), std::string::npos) << uneven.err;
    EXPECT_NE(uneven.err.find("does not split"), std::string::npos) << uneven.err;
    // The source must have been trained with this run's tokenizer.
    std::ofstream(dir("dense") / "tokenizer.txt", std::ios::app) << "another vocabulary";
    const CommandResult other = moelab(convert + " --out other");
    EXPECT_EQ(other.exit_code, 2);
    EXPECT_NE(other.err.find("was trained with another tokenizer"), std::string::npos) << other.err;
    const CommandResult missing = moelab(convert + " --out missing --set init.from=nowhere");
    EXPECT_EQ(missing.exit_code, 2);
    EXPECT_NE(missing.err.find("--set init.from=nowhere: init.from: no checkpoint at nowhere"),
              std::string::npos)
        << missing.err;
}

}  // namespace
}  // namespace moelab::tests

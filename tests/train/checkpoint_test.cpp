// safetensors files against the published format, checkpoint directories (atomic publication,
// `latest`, pruning, interrupted saves), and a model round trip through a checkpoint.

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "core/system/read_file.h"
#include "core/train/model_state.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

class CheckpointFiles : public ::testing::Test {
  protected:
    tests::TempDir temp_{"moelab-ckpt"};
    const fs::path& dir_ = temp_.path();
};

void write_text(const fs::path& file, const std::string& text) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
}

std::string read_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(CheckpointFiles, SafetensorsLayoutFollowsTheSpec) {
    const at::Tensor a = at::arange(6, at::kFloat).view({2, 3});
    const at::Tensor b = at::tensor({7, -8}, at::kLong);
    const at::Tensor c = at::ones({3}, at::kBFloat16);
    write_safetensors(dir_ / "t.safetensors", {{"a", a}, {"b", b}, {"c", c}}, {{"k", "v"}});

    // Parse by hand, independently of read_safetensors.
    const std::string bytes = read_bytes(dir_ / "t.safetensors");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u) << "header padded to 8-byte alignment";
    const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
    EXPECT_EQ(header["__metadata__"]["k"], "v");
    EXPECT_EQ(header["a"]["dtype"], "F32");
    EXPECT_EQ(header["a"]["shape"], nlohmann::json::array({2, 3}));
    EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json::array({0, 24}));
    EXPECT_EQ(header["b"]["dtype"], "I64");
    EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json::array({24, 40}));
    EXPECT_EQ(header["c"]["dtype"], "BF16");
    EXPECT_EQ(header["c"]["data_offsets"], nlohmann::json::array({40, 46}));
    EXPECT_EQ(bytes.size(), 8 + n + 46) << "the buffer holds exactly the tensors";
    float a_values[6];
    std::memcpy(a_values, bytes.data() + 8 + n, sizeof a_values);
    EXPECT_EQ(a_values[4], 4.0f) << "little-endian row-major data";
    std::int64_t b1 = 0;
    std::memcpy(&b1, bytes.data() + 8 + n + 24 + 8, 8);
    EXPECT_EQ(b1, -8);

    const SafetensorsContents back = read_safetensors(dir_ / "t.safetensors");
    EXPECT_TRUE(at::equal(back.tensors.at("a"), a));
    EXPECT_TRUE(at::equal(back.tensors.at("b"), b));
    EXPECT_TRUE(at::equal(back.tensors.at("c"), c));
    EXPECT_EQ(back.metadata.at("k"), "v");
}

TEST_F(CheckpointFiles, CorruptSafetensorsAreRejectedWithTheFileName) {
    write_safetensors(dir_ / "t.safetensors", {{"a", at::ones({4})}});
    std::string bytes = read_bytes(dir_ / "t.safetensors");
    const fs::path truncated = dir_ / "truncated.safetensors";
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
    try {
        read_safetensors(truncated);
        FAIL();
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("truncated.safetensors"), std::string::npos);
    }
    const fs::path garbage = dir_ / "garbage.safetensors";
    std::ofstream(garbage, std::ios::binary) << "12345678not json";
    EXPECT_THROW(read_safetensors(garbage), CheckpointError);
}

CheckpointContents contents_for(std::int64_t step) {
    CheckpointContents contents;
    contents.model = {{"w", at::full({2, 2}, static_cast<float>(step))}};
    contents.optimizer = {{"exp_avg/w", at::zeros({2, 2})}};
    contents.state.tokens_seen = 100 * step;
    contents.state.recipe_hash = "hash-" + std::to_string(step);
    contents.state.extra = {{"note", "step " + std::to_string(step)}};
    return contents;
}

TEST_F(CheckpointFiles, LatestPointsAtTheNewestAndOldOnesArePruned) {
    for (std::int64_t step : {10, 20, 30}) save_checkpoint(dir_, step, contents_for(step), 2);
    EXPECT_FALSE(fs::exists(dir_ / "step-10"));
    EXPECT_TRUE(fs::exists(dir_ / "step-20"));
    const fs::path latest = resolve_checkpoint(dir_);
    EXPECT_EQ(latest.filename(), "step-30");
    const LoadedCheckpoint loaded = load_checkpoint(latest);
    EXPECT_EQ(loaded.state.step, 30);
    EXPECT_EQ(loaded.state.tokens_seen, 3000);
    EXPECT_EQ(loaded.state.recipe_hash, "hash-30");
    EXPECT_EQ(loaded.state.extra.at("note"), "step 30");
    EXPECT_EQ(loaded.model.at("w")[0][0].item<float>(), 30.0f);
    // Resolving from the run directory and from a step directory works too.
    EXPECT_EQ(resolve_checkpoint(dir_ / "step-20").filename(), "step-20");
}

TEST_F(CheckpointFiles, AFailureBeforePublishingLeavesThePreviousCheckpointUsable) {
    save_checkpoint(dir_, 1, contents_for(1), 3);
    SaveHooks crash;
    crash.before_publish = [](const std::filesystem::path&) {
        throw std::runtime_error("simulated crash");
    };
    EXPECT_THROW(save_checkpoint(dir_, 2, contents_for(2), 3, crash), std::runtime_error);
    EXPECT_FALSE(fs::exists(dir_ / "step-2"));
    const fs::path latest = resolve_checkpoint(dir_);
    EXPECT_EQ(latest.filename(), "step-1");
    EXPECT_EQ(load_checkpoint(latest).model.at("w")[0][0].item<float>(), 1.0f);
    // The next save succeeds and cleans up the half-written temporary directory.
    save_checkpoint(dir_, 3, contents_for(3), 3);
    for (const auto& entry : fs::directory_iterator(dir_)) {
        EXPECT_NE(entry.path().filename().string().rfind(".tmp-", 0), 0u) << entry.path();
    }
    EXPECT_EQ(resolve_checkpoint(dir_).filename(), "step-3");
}

// Note [Expert shards], with the two writers of a degree-2 run played by this one process: the
// second writes its file into the temporary directory the first names in before_publish.
class ExpertShardFiles : public CheckpointFiles {
  protected:
    // A bank of 4 experts, (4, 2, 3), and its optimizer state; expert e is filled with e (+ 10).
    static at::Tensor bank(double offset) {
        return (at::arange(4, at::kFloat).view({4, 1, 1}) + offset).expand({4, 2, 3}).contiguous();
    }
    // Process p holds experts 2p and 2p + 1, each named by its global id.
    static std::vector<NamedTensor> experts_of(int process, const std::string& name,
                                               double offset) {
        return {{name + "." + std::to_string(2 * process), bank(offset)[2 * process]},
                {name + "." + std::to_string(2 * process + 1), bank(offset)[2 * process + 1]}};
    }
    fs::path save_sharded(const std::function<void(const fs::path&)>& second_writer) {
        CheckpointContents contents = contents_for(7);
        for (NamedTensor& t : experts_of(0, "layer0.experts.w_in", 0)) contents.model.push_back(t);
        for (NamedTensor& t : experts_of(0, "exp_avg/layer0.experts.w_in", 10)) {
            contents.optimizer.push_back(t);
        }
        contents.shards.files = 2;
        contents.shards.model_stacks = {{"layer0.experts.w_in", 4}};
        contents.shards.optimizer_stacks = {{"exp_avg/layer0.experts.w_in", 4}};
        SaveHooks hooks;
        hooks.before_publish = second_writer;
        return save_checkpoint(dir_, 7, contents, 3, hooks);
    }
    static void write_second(const fs::path& directory) {
        write_checkpoint_shard(directory, 2, 2, experts_of(1, "layer0.experts.w_in", 0),
                               experts_of(1, "exp_avg/layer0.experts.w_in", 10));
    }
};

TEST_F(ExpertShardFiles, TwoWritersOneCheckpointReadWhole) {
    const fs::path step = save_sharded(write_second);
    for (const char* file : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                             "model.safetensors.index.json", "optimizer-00001-of-00002.safetensors",
                             "optimizer-00002-of-00002.safetensors",
                             "optimizer.safetensors.index.json", "state.json"}) {
        EXPECT_TRUE(fs::exists(step / file)) << file;
    }
    EXPECT_FALSE(fs::exists(step / "model.safetensors"));
    const nlohmann::json index =
        nlohmann::json::parse(read_bytes(step / "model.safetensors.index.json"));
    EXPECT_EQ(index["weight_map"]["w"], "model-00001-of-00002.safetensors");
    EXPECT_EQ(index["weight_map"]["layer0.experts.w_in.1"], "model-00001-of-00002.safetensors");
    EXPECT_EQ(index["weight_map"]["layer0.experts.w_in.2"], "model-00002-of-00002.safetensors");
    EXPECT_EQ(index["moelab_expert_stacks"]["layer0.experts.w_in"], 4);
    EXPECT_EQ(resolve_checkpoint(dir_), step);
    const LoadedCheckpoint loaded = load_checkpoint(step);
    EXPECT_TRUE(at::equal(loaded.model.at("layer0.experts.w_in"), bank(0)));
    EXPECT_TRUE(at::equal(loaded.optimizer.at("exp_avg/layer0.experts.w_in"), bank(10)));
    EXPECT_EQ(loaded.model.count("layer0.experts.w_in.0"), 0u);
    EXPECT_EQ(loaded.state.step, 7);
}

TEST_F(ExpertShardFiles, AMissingExpertOrAPathInTheIndexIsRefusedByName) {
    const fs::path step = save_sharded(write_second);
    fs::remove(step / "model-00002-of-00002.safetensors");
    try {
        load_checkpoint(step, CheckpointParts::kModel);
        FAIL() << "a missing shard file";
    } catch (const std::exception& error) {
        EXPECT_NE(std::string(error.what()).find("model-00002-of-00002.safetensors"),
                  std::string::npos)
            << error.what();
    }
    write_text(step / "model.safetensors.index.json",
               R"({"weight_map": {"w": "../../etc/passwd.safetensors"}})");
    try {
        load_checkpoint(step, CheckpointParts::kModel);
        FAIL() << "an index pointing outside its directory";
    } catch (const CheckpointError& error) {
        EXPECT_NE(std::string(error.what()).find("weight_map[\"w\"]"), std::string::npos)
            << error.what();
    }
    write_text(step / "model.safetensors.index.json",
               R"({"weight_map": {"w": "model-00001-of-00002.safetensors",
                   "layer0.experts.w_in.0": "model-00001-of-00002.safetensors"},
                   "moelab_expert_stacks": {"layer0.experts.w_in": 4}})");
    try {
        load_checkpoint(step, CheckpointParts::kModel);
        FAIL() << "experts 1 to 3 are in no file";
    } catch (const CheckpointError& error) {
        EXPECT_NE(std::string(error.what()).find("expert 1 ('layer0.experts.w_in.1') is in none"),
                  std::string::npos)
            << error.what();
    }
}

TEST_F(ExpertShardFiles, ASecondWriterThatFailsPublishesNothing) {
    save_checkpoint(dir_, 1, contents_for(1), 3);
    EXPECT_THROW(save_sharded([](const fs::path&) { throw std::runtime_error("rank 1 died"); }),
                 std::runtime_error);
    EXPECT_EQ(resolve_checkpoint(dir_).filename(), "step-1");
}

TEST_F(CheckpointFiles, SavingTheSameStepTwiceReplacesIt) {
    save_checkpoint(dir_, 5, contents_for(5), 2);
    CheckpointContents again = contents_for(5);
    again.model[0].tensor.fill_(55.0f);
    save_checkpoint(dir_, 5, again, 2);
    EXPECT_EQ(load_checkpoint(resolve_checkpoint(dir_)).model.at("w")[0][0].item<float>(), 55.0f);
}

TEST_F(CheckpointFiles, MissingCheckpointIsAClearError) {
    try {
        resolve_checkpoint(dir_ / "nothing-here");
        FAIL();
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("no checkpoint at"), std::string::npos);
    }
}

// Killed after step-2 was renamed into place but before `latest` was rewritten, with the
// temporary files of that save still there: the newest complete checkpoint is found, and the next
// start removes the leftovers.
TEST_F(CheckpointFiles, ResumeFindsTheNewestCompleteCheckpointWhenLatestIsMissingOrStale) {
    save_checkpoint(dir_, 1, contents_for(1), 5);
    save_checkpoint(dir_, 2, contents_for(2), 5);
    fs::remove(dir_ / "latest");
    EXPECT_EQ(resolve_checkpoint(dir_).filename(), "step-2") << "latest missing";
    write_text(dir_ / "latest", "step-1\n");
    EXPECT_EQ(resolve_checkpoint(dir_).filename(), "step-2") << "latest stale";
    EXPECT_EQ(newest_checkpoint(dir_)->filename(), "step-2");

    // An incomplete step directory (not something a save publishes, but a damaged tree) is
    // skipped, and so are the leftovers of an interrupted save.
    fs::create_directories(dir_ / "step-3");
    write_text(dir_ / "step-3" / "model.safetensors", "");
    fs::create_directories(dir_ / ".tmp-step-4-999");
    write_text(dir_ / ".tmp-step-4-999" / "model.safetensors", "partial");
    write_text(dir_ / ".latest.tmp.999", "step-4");
    EXPECT_EQ(resolve_checkpoint(dir_).filename(), "step-2");
    EXPECT_EQ(clean_interrupted_saves(dir_), 2);
    EXPECT_FALSE(fs::exists(dir_ / ".tmp-step-4-999"));
    EXPECT_FALSE(fs::exists(dir_ / ".latest.tmp.999"));
    EXPECT_TRUE(fs::exists(dir_ / "step-3")) << "not a leftover of a save: left alone";
}

TEST_F(CheckpointFiles, OnlyTheLatestFileAndNoCompleteStepIsAClearError) {
    write_text(dir_ / "latest", "step-7\n");
    try {
        resolve_checkpoint(dir_);
        FAIL();
    } catch (const CheckpointError& e) {
        EXPECT_NE(std::string(e.what()).find("no complete checkpoint"), std::string::npos)
            << e.what();
    }
}

// A full disk, simulated with a file size limit (the write fails with EFBIG, as it would with
// ENOSPC): the error says why, the partial directory is removed, the previous checkpoint stays.
TEST_F(CheckpointFiles, AFailedWriteSaysWhyAndRemovesItsPartialDirectory) {
    save_checkpoint(dir_, 1, contents_for(1), 3);
    CheckpointContents big = contents_for(2);
    big.model.push_back({"big", at::zeros({1 << 16})});  // 256 KiB

    struct rlimit old_limit {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = old_limit;
    limit.rlim_cur = 64 * 1024;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
    std::string message;
    try {
        save_checkpoint(dir_, 2, big, 3);
    } catch (const CheckpointError& e) {
        message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    std::signal(SIGXFSZ, old_handler);

    EXPECT_NE(message.find("saving checkpoint step-2 failed"), std::string::npos) << message;
    EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find(std::strerror(EFBIG)), std::string::npos) << message;
    for (const auto& entry : fs::directory_iterator(dir_)) {
        EXPECT_NE(entry.path().filename().string().rfind(".tmp-", 0), 0u) << entry.path();
    }
    EXPECT_EQ(resolve_checkpoint(dir_).filename(), "step-1");
}

TEST_F(CheckpointFiles, EvaluationReadsOnlyTheWeights) {
    const fs::path step = save_checkpoint(dir_, 4, contents_for(4), 3);
    fs::remove(step / "optimizer.safetensors");
    const LoadedCheckpoint loaded = load_checkpoint(step, CheckpointParts::kModel);
    EXPECT_EQ(loaded.model.at("w")[0][0].item<float>(), 4.0f);
    EXPECT_TRUE(loaded.optimizer.empty());
    EXPECT_THROW(load_checkpoint(step), CheckpointError);
}

TEST_F(CheckpointFiles, DamagedStateNamesTheFileAndTheField) {
    const fs::path step = save_checkpoint(dir_, 6, contents_for(6), 3);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{", "not valid JSON"},
        {"[]", "expected a JSON object"},
        {R"({"format": "moelab-checkpoint-1", "step": "six"})", "step: expected a non-negative"},
        {R"({"format": "moelab-checkpoint-1", "step": 6, "optimizer_steps": 6,
             "tokens_seen": 1, "data": {"epoch": 0}, "recipe_hash": "h"})",
         "data.cursor: missing"},
        {R"({"format": "other"})", "format: expected \"moelab-checkpoint-1\""},
    };
    for (const auto& [text, expected] : cases) {
        write_text(step / "state.json", text);
        try {
            load_checkpoint(step);
            ADD_FAILURE() << text;
        } catch (const CheckpointError& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find("state.json"), std::string::npos) << what;
            EXPECT_NE(what.find(expected), std::string::npos) << what;
        }
    }
}

TEST_F(CheckpointFiles, SafetensorsErrorsNameTheFile) {
    const fs::path step = save_checkpoint(dir_, 7, contents_for(7), 3);
    std::string bytes = read_file(step / "model.safetensors", kMaxCheckpointFileBytes);
    const auto at = bytes.find("\"F32\"");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 5, "\"XX\" ");
    write_text(step / "model.safetensors", bytes);
    try {
        read_safetensors(step / "model.safetensors");
        FAIL();
    } catch (const CheckpointError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("model.safetensors: not a valid safetensors file"), std::string::npos)
            << what;
        EXPECT_NE(what.find("dtype must be one of"), std::string::npos) << what;
    }
    EXPECT_THROW(read_safetensors(dir_), CheckpointError) << "a directory";
}

// SDK 4 moved the SMoE-Share gate from the router into the host's block: checkpoints written
// under the old names load into the current model, and the names are checked as strictly as ever.
TEST(ModelState, RenamedSharedGateTensorsLoadUnderTheirCurrentNames) {
    struct Block : torch::nn::Module {
        Block() {
            weight = register_parameter("shared_gate_weight", at::zeros({2, 3}));
            bias = register_parameter("shared_gate_bias", at::zeros({2}));
        }
        at::Tensor weight, bias;
    };
    struct Layer : torch::nn::Module {
        Layer() { block = register_module("block", std::make_shared<Block>()); }
        std::shared_ptr<Block> block;
    };
    torch::nn::Module model;
    auto layer = model.register_module("layer1", std::make_shared<Layer>());
    const at::Tensor weight = at::arange(6, at::kFloat).reshape({2, 3});
    const at::Tensor bias = at::tensor({5.0f, 7.0f});
    load_model_tensors(model, {{"layer1.block.router.shared_gate_weight", weight},
                               {"layer1.block.router.shared_gate_bias", bias}});
    EXPECT_TRUE(at::equal(layer->block->weight, weight));
    EXPECT_TRUE(at::equal(layer->block->bias, bias));
    // Anything else that does not fit is still reported.
    EXPECT_THROW(load_model_tensors(model, {{"layer1.block.router.shared_gate_weight", weight}}),
                 CheckpointError);
}

}  // namespace
}  // namespace moelab::core

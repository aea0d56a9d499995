// safetensors files against the published format, checkpoint directories (atomic publication,
// `latest`, pruning, interrupted saves), and a model round trip through a checkpoint.

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

class CheckpointFiles : public ::testing::Test {
protected:
    tests::TempDir temp_{"moelab-ckpt"};
    const fs::path& dir_ = temp_.path();
};

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
    contents.state = {{"note", "step " + std::to_string(step)}};
    return contents;
}

TEST_F(CheckpointFiles, LatestPointsAtTheNewestAndOldOnesArePruned) {
    for (std::int64_t step : {10, 20, 30}) save_checkpoint(dir_, step, contents_for(step), 2);
    EXPECT_FALSE(fs::exists(dir_ / "step-10"));
    EXPECT_TRUE(fs::exists(dir_ / "step-20"));
    const fs::path latest = resolve_checkpoint(dir_);
    EXPECT_EQ(latest.filename(), "step-30");
    const LoadedCheckpoint loaded = load_checkpoint(latest);
    EXPECT_EQ(loaded.state["step"], 30);
    EXPECT_EQ(loaded.model.at("w")[0][0].item<float>(), 30.0f);
    // Resolving from the run directory and from a step directory works too.
    EXPECT_EQ(resolve_checkpoint(dir_ / "step-20").filename(), "step-20");
}

TEST_F(CheckpointFiles, AFailureBeforePublishingLeavesThePreviousCheckpointUsable) {
    save_checkpoint(dir_, 1, contents_for(1), 3);
    SaveHooks crash;
    crash.before_publish = [] { throw std::runtime_error("simulated crash"); };
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

}  // namespace
}  // namespace moelab::core

// Checkpoints hold whole banks; a process takes its experts, and a checkpoint of another expert
// count is refused with the tensor's name (expert_shards.h).

#include "core/train/expert_shards.h"

#include <gtest/gtest.h>

#include "core/checkpoint/checkpoint_error.h"

namespace moelab::core {
namespace {

const std::map<std::string, ExpertShard> kShards = {
    {"layer0.ffn.block.experts.w_in", ExpertShard{2, 2, 4}}};

TEST(ExpertShards, NamesParametersAndTheirOptimizerState) {
    EXPECT_NE(expert_shard_of("layer0.ffn.block.experts.w_in", kShards), nullptr);
    EXPECT_NE(expert_shard_of("exp_avg/layer0.ffn.block.experts.w_in", kShards), nullptr);
    EXPECT_NE(expert_shard_of("exp_avg_sq/layer0.ffn.block.experts.w_in", kShards), nullptr);
    EXPECT_EQ(expert_shard_of("layer0.ffn.block.experts.w_out", kShards), nullptr);
    EXPECT_EQ(expert_shard_of("embedding", kShards), nullptr);
}

TEST(ExpertShards, SelectsThisProcessesExperts) {
    const at::Tensor whole = at::arange(4 * 3, at::kFloat).view({4, 3});
    const auto selected = select_expert_shards({{"layer0.ffn.block.experts.w_in", whole},
                                                {"exp_avg/layer0.ffn.block.experts.w_in", whole},
                                                {"embedding", whole}},
                                               kShards);
    EXPECT_TRUE(at::equal(selected.at("layer0.ffn.block.experts.w_in"), whole.narrow(0, 2, 2)));
    EXPECT_TRUE(
        at::equal(selected.at("exp_avg/layer0.ffn.block.experts.w_in"), whole.narrow(0, 2, 2)));
    EXPECT_TRUE(at::equal(selected.at("embedding"), whole));
}

TEST(ExpertShards, RefusesAnotherExpertCountNamingTheTensor) {
    try {
        select_expert_shards({{"layer0.ffn.block.experts.w_in", at::zeros({8, 3})}}, kShards);
        FAIL() << "a bank of 8 experts loaded into a model of 4";
    } catch (const CheckpointError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("'layer0.ffn.block.experts.w_in' has shape (8, 3)"),
                  std::string::npos)
            << message;
        EXPECT_NE(message.find("4 experts"), std::string::npos) << message;
    }
}

TEST(ExpertShards, SplitsPerGlobalExpert) {
    const at::Tensor mine = at::arange(2 * 3, at::kFloat).view({2, 3});  // experts 2 and 3 of 4
    std::map<std::string, std::int64_t> stacks;
    const std::vector<NamedTensor> split = split_into_experts(
        {{"embedding", at::ones({2})}, {"exp_avg/layer0.ffn.block.experts.w_in", mine}}, kShards,
        stacks);
    ASSERT_EQ(split.size(), 3u);
    EXPECT_EQ(split[0].name, "embedding");
    EXPECT_EQ(split[1].name, "exp_avg/layer0.ffn.block.experts.w_in.2");
    EXPECT_EQ(split[2].name, "exp_avg/layer0.ffn.block.experts.w_in.3");
    EXPECT_TRUE(at::equal(split[2].tensor, mine[1]));
    EXPECT_EQ(stacks,
              (std::map<std::string, std::int64_t>{{"exp_avg/layer0.ffn.block.experts.w_in", 4}}));
}

}  // namespace
}  // namespace moelab::core

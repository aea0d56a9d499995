#include "core/dist/launch_environment.h"

#include <map>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "core/dist/parallel_layout.h"

namespace moelab::core {
namespace {

std::optional<LaunchEnvironment> parse(const std::map<std::string, std::string>& variables) {
    return launch_environment([&](const char* name) -> const char* {
        auto it = variables.find(name);
        return it == variables.end() ? nullptr : it->second.c_str();
    });
}

TEST(LaunchEnvironment, NoWorldSizeIsOneProcess) { EXPECT_FALSE(parse({}).has_value()); }

TEST(LaunchEnvironment, ReadsTorchrunsVariables) {
    const auto env = parse({{"RANK", "3"},
                            {"WORLD_SIZE", "4"},
                            {"LOCAL_RANK", "1"},
                            {"MASTER_ADDR", "10.0.0.2"},
                            {"MASTER_PORT", "29500"},
                            {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                            {"TORCHELASTIC_RESTART_COUNT", "2"}});
    ASSERT_TRUE(env.has_value());
    EXPECT_EQ(env->rank, 3);
    EXPECT_EQ(env->world_size, 4);
    EXPECT_EQ(env->local_rank, 1);
    EXPECT_EQ(env->master_addr, "10.0.0.2");
    EXPECT_EQ(env->master_port, 29500);
    EXPECT_TRUE(env->agent_store);
    EXPECT_EQ(env->restart_count, 2);
    EXPECT_TRUE(env->file_store.empty());
}

TEST(LaunchEnvironment, FileStoreNeedsNoAddress) {
    const auto env = parse({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MOELAB_FILE_STORE", "/tmp/x"}});
    ASSERT_TRUE(env.has_value());
    EXPECT_EQ(env->file_store, "/tmp/x");
}

TEST(LaunchEnvironment, NamesTheBadVariable) {
    auto message = [](const std::map<std::string, std::string>& variables) {
        try {
            parse(variables);
        } catch (const std::invalid_argument& error) {
            return std::string(error.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message({{"WORLD_SIZE", "two"}, {"RANK", "0"}}).find("WORLD_SIZE=two"),
              std::string::npos);
    EXPECT_NE(
        message({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})
            .find("RANK=2: expected an integer in [0, 1]"),
        std::string::npos);
    EXPECT_NE(message({{"WORLD_SIZE", "2"}}).find("RANK is not"), std::string::npos);
    EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "0"}}).find("MASTER_ADDR and MASTER_PORT"),
              std::string::npos);
    EXPECT_NE(
        message(
            {{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
            .find("MASTER_PORT=70000"),
        std::string::npos);
}

// Note [Parallel layout], worked out by hand for 4 processes with expert degree 2.
TEST(ParallelLayout, GroupsAndShares) {
    const ParallelLayout rank3{4, 3, 2};
    EXPECT_EQ(rank3.expert_rank(), 1);
    EXPECT_EQ(rank3.expert_group(), 1);
    EXPECT_EQ(rank3.expert_group_members(), (std::vector<int>{2, 3}));
    EXPECT_EQ(rank3.expert_replica_members(), (std::vector<int>{1, 3}));
    EXPECT_EQ(rank3.first_row(16), 12);
    EXPECT_EQ(rank3.local_rows(16), 4);
    const ParallelLayout rank0{4, 0, 4};
    EXPECT_EQ(rank0.expert_group_members(), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(rank0.expert_replica_members(), (std::vector<int>{0}));
}

}  // namespace
}  // namespace moelab::core

// moelab data: stats against a hand count of the corpus (documents, tokens = bytes + one
// end-of-document id per document for the byte tokenizer), a warm second call that reuses the
// shards, and a damaged shard named by --verify (exit 1).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

std::string moelab() { return shell_quote(MOELAB_BINARY); }
std::string q(const fs::path& p) { return shell_quote(p.string()); }

// Documents are separated by blank lines; the byte tokenizer gives one id per byte of each
// document (its lines with their '\n') and one end-of-document id.
struct Counted {
    std::int64_t documents = 0, tokens = 0;
};
Counted count_documents(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    Counted counted;
    std::int64_t current = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) {
            if (current > 0) counted.tokens += current + 1, ++counted.documents;
            current = 0;
            continue;
        }
        current += static_cast<std::int64_t>(line.size()) + 1;
    }
    if (current > 0) counted.tokens += current + 1, ++counted.documents;
    return counted;
}

class DataCli : public ::testing::Test {
  protected:
    void SetUp() override {
        corpus_ = fs::path(MOELAB_SOURCE_DIR) / "data" / "brown";
        ASSERT_TRUE(fs::exists(corpus_ / "test.txt")) << "run `bash tools/setup.sh` first";
        // The test split only, three times over (as train, validation and test): small and fast.
        fs::create_directories(dir_ / "corpus");
        for (const char* split : {"train.txt", "validation.txt", "test.txt"}) {
            fs::copy_file(corpus_ / "test.txt", dir_ / "corpus" / split);
        }
    }
    std::string recipe_args() const {
        return q(fs::path(MOELAB_SOURCE_DIR) / "recipes" / "quickstart.toml") +
               " --set 'data.corpus=\"" + (dir_ / "corpus").string() + "\"' --set " +
               "'data.cache_dir=\"" + (dir_ / "cache").string() + "\"'";
    }

    fs::path corpus_;
    TempDir temp_{"moelab-data-cli"};
    const fs::path& dir_ = temp_.path();
};

TEST_F(DataCli, StatsMatchAHandCountAndASecondCallReusesTheShards) {
    const Counted expected = count_documents(dir_ / "corpus" / "test.txt");
    const CommandResult first = run_command(moelab() + " data stats --json " + recipe_args());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    EXPECT_NE(first.err.find("cached in"), std::string::npos) << first.err;  // encoded now
    const nlohmann::json stats = nlohmann::json::parse(first.out);
    ASSERT_EQ(stats["splits"].size(), 3u);
    for (const auto& split : stats["splits"]) {
        EXPECT_EQ(split["documents"].get<std::int64_t>(), expected.documents) << split;
        EXPECT_EQ(split["tokens"].get<std::int64_t>(), expected.tokens) << split;
        EXPECT_EQ(split["bytes"].get<std::int64_t>(),
                  static_cast<std::int64_t>(fs::file_size(dir_ / "corpus" / "test.txt")));
        EXPECT_EQ(split["id_bytes"].get<int>(), 2);
        // Header, 2-byte ids padded to 8 bytes, 8 bytes per document end and per vocabulary id.
        EXPECT_EQ(split["shard_bytes"].get<std::int64_t>(),
                  48 + (2 * expected.tokens + 7) / 8 * 8 + 8 * expected.documents +
                      8 * stats["vocab_size"].get<std::int64_t>());
    }
    const CommandResult second = run_command(moelab() + " data stats --verify " + recipe_args());
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_EQ(second.err.find("cached in"), std::string::npos) << second.err;  // nothing encoded
    EXPECT_NE(second.out.find("every shard verified"), std::string::npos) << second.out;
}

TEST_F(DataCli, VerifyNamesADamagedShardAndExitsOne) {
    ASSERT_EQ(run_command(moelab() + " data prepare " + recipe_args()).exit_code, 0);
    fs::path damaged;
    for (const auto& entry : fs::directory_iterator(dir_ / "cache" / "tokens")) {
        if (entry.path().filename().string().rfind("validation-", 0) == 0) damaged = entry.path();
    }
    ASSERT_FALSE(damaged.empty());
    {
        std::fstream file(damaged, std::ios::in | std::ios::out | std::ios::binary);
        file.seekg(1000);
        const char byte = static_cast<char>(file.get());
        file.seekp(1000);
        file.put(static_cast<char>(~byte));
    }
    const CommandResult r = run_command(moelab() + " data stats --verify " + recipe_args());
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find(damaged.filename().string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("checksum"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moelab::tests

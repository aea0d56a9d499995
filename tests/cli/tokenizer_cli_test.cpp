// moelab tokenizer: train -> encode -> decode round trip through files, stats figures against a
// hand computation, the HF export, and bad input (exit 2, naming the file or option).

#include <gtest/gtest.h>

#include <cmath>
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

std::string read_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

class TokenizerCli : public ::testing::Test {
protected:
    void SetUp() override {
        corpus_ = fs::path(MOELAB_SOURCE_DIR) / "data" / "brown";
        ASSERT_TRUE(fs::exists(corpus_ / "validation.txt")) << "run `bash tools/setup.sh` first";
    }
    // `moelab tokenizer train ARGS validation.txt -o FILE`; the file, after asserting success.
    fs::path train_on_validation(const std::string& args, const std::string& file) {
        const fs::path out = dir_ / file;
        const CommandResult r = run_command(moelab() + " tokenizer train " + args + " " +
                                            q(corpus_ / "validation.txt") + " -o " + q(out));
        EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
        return out;
    }
    // `moelab tokenizer stats --json ARGS TOK test.txt`, parsed.
    nlohmann::json stats_json(const fs::path& tok, const std::string& args = "") {
        const CommandResult r = run_command(moelab() + " tokenizer stats --json " + args + " " +
                                            q(tok) + " " + q(corpus_ / "test.txt"));
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
    }

    fs::path corpus_;
    TempDir temp_{"moelab-tokenizer-cli"};
    const fs::path& dir_ = temp_.path();
};

TEST_F(TokenizerCli, TrainEncodeDecodeRoundTripForEveryAlgorithm) {
    for (const char* algo : {"bpe", "scaffold-bpe", "lbpe"}) {
        const fs::path tok = dir_ / (std::string(algo) + ".json");
        CommandResult r = run_command(moelab() + " tokenizer train --algo " + algo +
                                      " --vocab 1000 --split-digits " + q(corpus_ / "validation.txt") +
                                      " -o " + q(tok));
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const auto json = nlohmann::json::parse(read_text(tok));
        EXPECT_EQ(json["tokenizer"], algo);
        EXPECT_EQ(json["pretokenizer"]["split_digits"], true);
        r = run_command(moelab() + " tokenizer encode " + q(tok) + " " + q(corpus_ / "test.txt") +
                        " -o " + q(dir_ / "ids.txt") + " --threads 2");
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_NE(r.err.find("MB/s"), std::string::npos) << r.err;
        // The same ids, in the same order, from one thread.
        r = run_command(moelab() + " tokenizer encode " + q(tok) + " " + q(corpus_ / "test.txt") +
                        " -o " + q(dir_ / "ids1.txt") + " --threads 1");
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_TRUE(read_text(dir_ / "ids1.txt") == read_text(dir_ / "ids.txt")) << algo;
        r = run_command(moelab() + " tokenizer decode " + q(tok) + " " + q(dir_ / "ids.txt") +
                        " -o " + q(dir_ / "decoded.txt"));
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_TRUE(read_text(dir_ / "decoded.txt") == read_text(corpus_ / "test.txt")) << algo;
    }
}

TEST_F(TokenizerCli, StatsMatchAHandComputation) {
    // The bytes tokenizer makes the counts obvious: "aab\n" twice -> a:4, b:2, \n:2 of 8 tokens.
    std::ofstream(dir_ / "text.txt") << "aab\naab\n";
    std::ofstream(dir_ / "bytes.json") << R"({"tokenizer": "bytes", "type": "bytes", "version": 1})";
    const CommandResult r = run_command(moelab() + " tokenizer stats --json " +
                                        q(dir_ / "bytes.json") + " " + q(dir_ / "text.txt"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto stats = nlohmann::json::parse(r.out);
    const double entropy = -(0.5 * std::log2(0.5) + 2 * 0.25 * std::log2(0.25));  // 1.5 bits
    EXPECT_EQ(stats["tokens"], 8);
    EXPECT_EQ(stats["bytes"], 8);
    EXPECT_DOUBLE_EQ(stats["bytes_per_token"].get<double>(), 1.0);
    EXPECT_NEAR(stats["entropy_bits"].get<double>(), entropy, 1e-12);
    EXPECT_NEAR(stats["redundancy"].get<double>(), 1.0 - entropy / std::log2(257.0), 1e-12);
}

TEST_F(TokenizerCli, StatsReportScaffoldTokens) {
    const fs::path tok = train_on_validation("--algo scaffold-bpe --vocab 800", "scaffold.json");
    const CommandResult r =
        run_command(moelab() + " tokenizer stats " + q(tok) + " " + q(corpus_ / "test.txt"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* line : {"scaffold tokens", "bytes per token", "entropy", "redundancy",
                             "vocabulary           800 ids"}) {
        EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
    }
    const auto stats = stats_json(tok);
    const std::string scaffold = stats["facts"]["scaffold tokens"].get<std::string>();
    const auto json = nlohmann::json::parse(read_text(tok));
    EXPECT_GT(json["scaffold"].size(), 0u);
    EXPECT_EQ(scaffold.substr(0, scaffold.find(' ')), std::to_string(json["scaffold"].size()));
    EXPECT_EQ(stats["vocab_size"], 800);
}

// An LBPE file encodes the way it was trained, whatever the loader's defaults; a plain BPE file
// loaded --as lbpe takes the options given on the command line.
TEST_F(TokenizerCli, LbpeFileKeepsItsOwnEncodingOptions) {
    const fs::path lbpe = train_on_validation("--algo lbpe --vocab 400 --set length_unit=chars", "lbpe.json");
    EXPECT_EQ(stats_json(lbpe)["facts"]["encoding"], "longest first (length in chars, ties by rank)");
    const fs::path bpe = train_on_validation("--vocab 400", "bpe.json");
    EXPECT_EQ(stats_json(bpe, "--as lbpe --set tie_break=position")["facts"]["encoding"],
              "longest first (length in bytes, ties by position)");
}

TEST_F(TokenizerCli, ExportsHuggingFaceLayoutForBpeOnly) {
    const fs::path tok = dir_ / "bpe.json";
    CommandResult r = run_command(moelab() + " tokenizer train --vocab 600 --export hf " +
                                  q(corpus_ / "validation.txt") + " -o " + q(tok));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto hf = nlohmann::json::parse(read_text(dir_ / "bpe.hf.json"));
    EXPECT_EQ(hf["model"]["type"], "BPE");
    EXPECT_EQ(hf["model"]["vocab"].size(), 599u);
    r = run_command(moelab() + " tokenizer train --algo scaffold-bpe --vocab 600 --export hf " +
                    q(corpus_ / "validation.txt") + " -o " + q(dir_ / "s.json"));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("Scaffold-BPE vocabulary cannot be expressed"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(dir_ / "s.json")) << "the tokenizer itself is kept";
}

TEST_F(TokenizerCli, BadInputExitsTwoNamingTheProblem) {
    const std::string text = q(corpus_ / "validation.txt");
    auto expect_usage_error = [&](const std::string& args, const std::string& message) {
        const CommandResult r = run_command(moelab() + " tokenizer " + args);
        EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
        EXPECT_EQ(r.signal, 0);
        EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    };
    expect_usage_error("train --algo bpee " + text + " -o " + q(dir_ / "x.json"),
                       "no tokenizer component named 'bpee'");
    expect_usage_error("train --set vocab_sise=10 " + text + " -o " + q(dir_ / "x.json"),
                       "did you mean 'vocab_size'?");
    expect_usage_error("train --vocab 100 " + text + " -o " + q(dir_ / "x.json"),
                       "tokenizer.vocab_size");
    expect_usage_error("train --pretokenizer gtp2 " + text + " -o " + q(dir_ / "x.json"),
                       "did you mean 'gpt2'?");
    expect_usage_error("train " + q(dir_ / "missing.txt") + " -o " + q(dir_ / "x.json"),
                       "missing.txt: no such file");
    expect_usage_error("train --set foo=1 " + text + " -o " + q(dir_ / "x.json"),
                       "--set foo=1: tokenizer.foo: unknown key in [tokenizer]");
    expect_usage_error("train --vocab 300 " + text + " -o " + q(dir_),
                       "is a directory; name the tokenizer file to write");
    expect_usage_error("train --vocab 300 " + text + " -o " + q(dir_ / "nowhere" / "x.json"),
                       "does not exist");
    EXPECT_FALSE(fs::exists(dir_ / "x.json"));
    std::ofstream(dir_ / "broken.json") << R"({"tokenizer": "bpe", "format": "moelab-bpe"})";
    // Said once: the file, the plugin's reason, who read it (no "cannot load ... failed: ...").
    expect_usage_error("encode " + q(dir_ / "broken.json") + " " + text,
                       "broken.json: not a valid moelab BPE tokenizer file: ");
    expect_usage_error("encode " + q(dir_ / "broken.json") + " " + text,
                       " (read as a 'bpe' tokenizer by plugin 'bpe' (");
    std::ofstream(dir_ / "garbled.json") << "{\"tokenizer\": \"bpe\",\n  \"merges\": [oops]}";
    expect_usage_error("encode --as bpe " + q(dir_ / "garbled.json") + " " + text,
                       "garbled.json: not a valid moelab BPE tokenizer file: not valid JSON "
                       "(syntax error at line 2, column 14)");
    std::ofstream(dir_ / "anonymous.json") << R"({"merges": []})";
    expect_usage_error("stats " + q(dir_ / "anonymous.json") + " " + text, "name it with --as");
    ASSERT_EQ(run_command(moelab() + " tokenizer train --vocab 300 " + text + " -o " +
                          q(dir_ / "ok.json"))
                  .exit_code,
              0);
    expect_usage_error("encode --threads 0 " + q(dir_ / "ok.json") + " " + text, "--threads");
    std::ofstream(dir_ / "ids.txt") << "1 2 3\n4 x 5\n";
    expect_usage_error("decode " + q(dir_ / "ok.json") + " " + q(dir_ / "ids.txt"),
                       "ids.txt:2: expected token ids");
    std::ofstream(dir_ / "ids2.txt") << "1 299 300\n";
    expect_usage_error("decode " + q(dir_ / "ok.json") + " " + q(dir_ / "ids2.txt"),
                       "ids2.txt:1: id 300 is outside the vocabulary [0, 300)");
}

}  // namespace
}  // namespace moelab::tests

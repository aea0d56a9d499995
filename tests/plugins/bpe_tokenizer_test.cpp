// The bpe tokenizer plugin: merges equal a slow textbook BPE written here, encoding is lossless,
// and the serialized form loads back to the same tokenizer.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/plugin/plugin_error.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;
using Pair = std::pair<std::int32_t, std::int32_t>;

// Textbook BPE: recount every pair each round, merge the most frequent (ties: smallest pair).
std::vector<Pair> naive_bpe(const std::vector<std::string>& pretokens, int merges) {
    std::map<std::vector<std::int32_t>, std::int64_t> words;
    for (const std::string& p : pretokens) {
        std::vector<std::int32_t> s;
        for (unsigned char c : p) s.push_back(c);
        ++words[s];
    }
    std::vector<Pair> out;
    for (int m = 0; m < merges; ++m) {
        std::map<Pair, std::int64_t> counts;
        for (const auto& [w, c] : words) {
            for (std::size_t i = 0; i + 1 < w.size(); ++i) counts[{w[i], w[i + 1]}] += c;
        }
        if (counts.empty()) break;
        Pair best{};
        std::int64_t best_count = 0;
        for (const auto& [pair, count] : counts) {  // ascending pair order: first max wins ties
            if (count > best_count) {
                best = pair;
                best_count = count;
            }
        }
        if (best_count < 2) break;
        const std::int32_t id = 257 + m;
        out.push_back(best);
        std::map<std::vector<std::int32_t>, std::int64_t> next;
        for (const auto& [w, c] : words) {
            std::vector<std::int32_t> merged;
            for (std::size_t i = 0; i < w.size();) {
                if (i + 1 < w.size() && Pair{w[i], w[i + 1]} == best) {
                    merged.push_back(id);
                    i += 2;
                } else {
                    merged.push_back(w[i++]);
                }
            }
            next[merged] += c;
        }
        words = std::move(next);
    }
    return out;
}

std::vector<Pair> parse_merges(const std::string& serialized) {
    std::vector<std::int32_t> numbers;
    for (std::size_t i = serialized.find("\"merges\""); i < serialized.size(); ++i) {
        if (std::isdigit(static_cast<unsigned char>(serialized[i]))) {
            std::int32_t v = 0;
            while (std::isdigit(static_cast<unsigned char>(serialized[i]))) v = v * 10 + (serialized[i++] - '0');
            numbers.push_back(v);
        }
    }
    std::vector<Pair> merges;
    for (std::size_t i = 0; i + 1 < numbers.size(); i += 2) merges.emplace_back(numbers[i], numbers[i + 1]);
    return merges;
}

class BpePlugin : public ::testing::Test {
protected:
    void SetUp() override {
        registry_ = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
        bpe_ = registry_.find_tokenizer("bpe");
        ASSERT_NE(bpe_, nullptr);
    }

    sdk::Params params(std::int64_t vocab) const {
        std::map<std::string, sdk::ParamValue, std::less<>> v{{"vocab_size", vocab},
                                                              {"min_frequency", std::int64_t{2}}};
        return sdk::Params(v);
    }

    PluginRegistry registry_;
    const RegisteredTokenizer* bpe_ = nullptr;
    tests::TempDir temp_{"moelab-bpe"};
    const fs::path& dir_ = temp_.path();
};

TEST_F(BpePlugin, MergesEqualTheTextbookAlgorithm) {
    // Lower-case words separated by single spaces: the pre-tokens are " word" pieces (and the
    // first word), so the reference can pre-tokenize by splitting before each space.
    std::string text;
    std::uint32_t state = 7;
    const char* words[] = {"low", "lower", "newest", "widest", "new", "wide", "lowest", "ne", "w"};
    std::vector<std::string> pretokens;
    for (int i = 0; i < 600; ++i) {
        state = state * 1103515245u + 12345u;
        std::string word = i ? " " : "";
        word += words[(state >> 16) % 9];
        text += word;
        pretokens.push_back(word);
    }
    std::ofstream(dir_ / "train.txt") << text;
    const auto tokenizer = train_tokenizer(*bpe_, {{(dir_ / "train.txt").string()}}, params(300));
    const std::vector<Pair> expected = naive_bpe(pretokens, 300 - 257);
    const std::vector<Pair> actual = parse_merges(tokenizer->serialize());
    ASSERT_FALSE(expected.empty());
    EXPECT_EQ(actual, expected);
    EXPECT_EQ(tokenizer->vocab_size(), 257 + static_cast<std::int64_t>(actual.size()));
}

TEST_F(BpePlugin, LosslessAndCompressesAndReloads) {
    const std::string text =
        "Hello, world! 12345 numbers and   spaces\n\ttabs, UTF-8: na\xc3\xafve caf\xc3\xa9 "
        "\xe2\x82\xac 100; the the the then there.\n";
    std::string corpus;
    for (int i = 0; i < 50; ++i) corpus += text;
    std::ofstream(dir_ / "train.txt") << corpus;
    const auto tokenizer = train_tokenizer(*bpe_, {{(dir_ / "train.txt").string()}}, params(400));
    std::vector<std::int32_t> ids;
    tokenizer->encode(text, ids);
    EXPECT_EQ(tokenizer->decode(ids), text);
    EXPECT_LT(ids.size(), text.size() / 2) << "BPE compresses its own training text";
    // Arbitrary bytes, unseen in training, still round-trip.
    const std::string bytes("\x00\xff\x80 zq\x01", 7);
    std::vector<std::int32_t> byte_ids;
    tokenizer->encode(bytes, byte_ids);
    EXPECT_EQ(tokenizer->decode(byte_ids), bytes);

    const auto reloaded = load_tokenizer(*bpe_, tokenizer->serialize(), params(400));
    std::vector<std::int32_t> again;
    reloaded->encode(text, again);
    EXPECT_EQ(again, ids);
    EXPECT_EQ(reloaded->serialize(), tokenizer->serialize());
    EXPECT_THROW(load_tokenizer(*bpe_, "{\"type\": \"bytes\"}", params(400)), PluginError);
}

TEST_F(BpePlugin, LosslessOnTheWholeBrownCorpus) {
    const fs::path corpus = fs::path(MOELAB_SOURCE_DIR) / "data" / "brown";
    ASSERT_TRUE(fs::exists(corpus / "train.txt"))
        << corpus << " is missing: run `bash tools/setup.sh` first";
    const auto tokenizer =
        train_tokenizer(*bpe_, {{(corpus / "train.txt").string()}}, params(2048));
    for (const char* split : {"train.txt", "validation.txt", "test.txt"}) {
        std::ifstream in(corpus / split, std::ios::binary);
        std::stringstream buffer;
        buffer << in.rdbuf();
        const std::string text = buffer.str();
        std::vector<std::int32_t> ids;
        tokenizer->encode(text, ids);
        EXPECT_TRUE(tokenizer->decode(ids) == text) << split;
        EXPECT_LT(ids.size(), text.size() * 2 / 5) << split << ": at least 2.5 bytes per token";
    }
}

}  // namespace
}  // namespace moelab::core

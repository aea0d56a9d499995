// The bpe, lbpe and scaffold-bpe plugins through the host: lossless on the whole Brown corpus,
// reloaded from their serialized form to identical tokenizers, and loading errors that name the
// right component.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/plugin/plugin_error.h"
#include "hf_byte_table.h"
#include "moelab/sdk/error.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

sdk::Params defaults_with_vocab(const RegisteredTokenizer& component, std::int64_t vocab) {
    std::map<std::string, sdk::ParamValue, std::less<>> values;
    for (const sdk::ParamSpec& spec : component.component.params.specs()) {
        values.emplace(spec.name, spec.default_value);
    }
    values["vocab_size"] = vocab;
    return sdk::Params(values);
}

// The bytes tokenizer as Hugging Face's tokenizer.json: a byte-level BPE without merges whose
// vocabulary gives every byte its own id, the byte's value (checked against GPT-2's table written
// out independently), and the end-of-document id 256 as the special <|endoftext|>.
TEST(BytesPlugin, ExportsEveryByteAsItsOwnIdToTokenizerJson) {
    const PluginRegistry registry = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const RegisteredTokenizer* component = registry.find_tokenizer("bytes");
    ASSERT_NE(component, nullptr);
    const auto tokenizer =
        load_tokenizer(*component, R"({"tokenizer": "bytes", "type": "bytes"})", sdk::Params());
    const auto hf = nlohmann::json::parse(tokenizer->export_as("hf"));
    EXPECT_EQ(hf["model"]["type"], "BPE");
    EXPECT_TRUE(hf["model"]["merges"].empty());
    EXPECT_EQ(hf["pre_tokenizer"]["type"], "ByteLevel");
    EXPECT_EQ(hf["decoder"]["type"], "ByteLevel");
    ASSERT_EQ(hf["added_tokens"].size(), 1u);
    EXPECT_EQ(hf["added_tokens"][0]["id"], 256);
    EXPECT_EQ(hf["added_tokens"][0]["content"], "<|endoftext|>");
    EXPECT_EQ(hf["added_tokens"][0]["special"], true);
    const auto byte_of = tests::hf_byte_decoder();
    ASSERT_EQ(hf["model"]["vocab"].size(), 256u);
    for (const auto& [piece, id] : hf["model"]["vocab"].items()) {
        ASSERT_EQ(byte_of.count(piece), 1u) << piece;
        EXPECT_EQ(id.get<int>(), byte_of.at(piece)) << piece;
    }
    EXPECT_THROW(tokenizer->export_as("sentencepiece"), sdk::Error);
}

class BpeFamilyPlugin : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        registry_ = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
        component_ = registry_.find_tokenizer(GetParam());
        ASSERT_NE(component_, nullptr) << GetParam();
        corpus_ = fs::path(MOELAB_SOURCE_DIR) / "data" / "brown";
        ASSERT_TRUE(fs::exists(corpus_ / "train.txt")) << "run `bash tools/setup.sh` first";
    }

    PluginRegistry registry_;
    const RegisteredTokenizer* component_ = nullptr;
    fs::path corpus_;
};

TEST_P(BpeFamilyPlugin, LosslessOnTheWholeCorpusAndReloadsIdentically) {
    const sdk::Params params = defaults_with_vocab(*component_, 2048);
    const auto tokenizer =
        train_tokenizer(*component_, {{(corpus_ / "train.txt").string()}}, params);
    EXPECT_EQ(tokenizer->vocab_size(), 2048);
    const auto reloaded = load_tokenizer(*component_, tokenizer->serialize(), params);
    EXPECT_EQ(reloaded->serialize(), tokenizer->serialize());
    for (const char* split : {"train.txt", "validation.txt", "test.txt"}) {
        const std::string text = read_text(corpus_ / split);
        std::vector<std::int32_t> ids;
        tokenizer->encode(text, ids);
        EXPECT_TRUE(tokenizer->decode(ids) == text) << split;
        EXPECT_LT(ids.size(), text.size() * 2 / 5) << split << ": at least 2.5 bytes per token";
        for (std::int32_t id : ids) ASSERT_TRUE(id >= 0 && id < 2048 && id != 256) << id;
        if (std::string(split) == "validation.txt") {
            std::vector<std::int32_t> again;
            reloaded->encode(text, again);
            EXPECT_EQ(again, ids);
        }
    }
    // Bytes never seen in training, and invalid UTF-8, still round-trip.
    const std::string bytes("\x00\xff\x80 zq\x01\xe2\x82", 9);
    std::vector<std::int32_t> ids;
    tokenizer->encode(bytes, ids);
    EXPECT_EQ(tokenizer->decode(ids), bytes);
    EXPECT_THROW(load_tokenizer(*component_, R"({"type": "bytes"})", params), PluginError);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, BpeFamilyPlugin,
                         ::testing::Values("bpe", "lbpe", "scaffold-bpe"), [](const auto& info) {
                             std::string name = info.param;
                             std::replace(name.begin(), name.end(), '-', '_');
                             return name;
                         });

TEST(BpeFamilyPlugins, LoadingAnotherAlgorithmsFileNamesTheRightComponent) {
    const PluginRegistry registry = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const auto* scaffold = registry.find_tokenizer("scaffold-bpe");
    const auto* bpe = registry.find_tokenizer("bpe");
    const auto* lbpe = registry.find_tokenizer("lbpe");
    ASSERT_TRUE(scaffold && bpe && lbpe);
    const fs::path train = fs::path(MOELAB_SOURCE_DIR) / "data" / "brown" / "validation.txt";
    const auto scaffold_tokenizer =
        train_tokenizer(*scaffold, {{train.string()}}, defaults_with_vocab(*scaffold, 600));
    try {
        load_tokenizer(*bpe, scaffold_tokenizer->serialize(), defaults_with_vocab(*bpe, 600));
        ADD_FAILURE() << "bpe loaded a Scaffold-BPE file";
    } catch (const PluginError& error) {
        EXPECT_NE(std::string(error.what()).find("use the 'scaffold-bpe' tokenizer"),
                  std::string::npos)
            << error.what();
    }
    // A bpe file is a valid LBPE vocabulary: same tokens, different segmentation.
    const auto bpe_tokenizer =
        train_tokenizer(*bpe, {{train.string()}}, defaults_with_vocab(*bpe, 600));
    const auto as_lbpe =
        load_tokenizer(*lbpe, bpe_tokenizer->serialize(), defaults_with_vocab(*lbpe, 600));
    EXPECT_EQ(as_lbpe->vocab_size(), bpe_tokenizer->vocab_size());
    EXPECT_NE(as_lbpe->serialize(), bpe_tokenizer->serialize())
        << "the encoding policy is recorded";
    const std::string text = read_text(train);
    std::vector<std::int32_t> by_rank, longest_first;
    bpe_tokenizer->encode(text, by_rank);
    as_lbpe->encode(text, longest_first);
    EXPECT_NE(by_rank, longest_first);
    EXPECT_EQ(as_lbpe->decode(longest_first), text);
}

}  // namespace
}  // namespace moelab::core

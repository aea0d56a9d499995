// Tokenizers are lossless on the whole default corpus: decode(encode(text)) == text for every
// split of data/brown (tools/setup.sh fetches it; the README's test command runs after setup).

#include <gtest/gtest.h>

#include <filesystem>

#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/system/read_file.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

TEST(CorpusRoundTrip, ByteTokenizerIsLosslessOnTheWholeBrownCorpus) {
    const fs::path corpus = fs::path(MOELAB_SOURCE_DIR) / "data" / "brown";
    ASSERT_TRUE(fs::exists(corpus / "train.txt"))
        << corpus << " is missing: run `bash tools/setup.sh` first";
    const PluginRegistry registry = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const RegisteredTokenizer* bytes = registry.find_tokenizer("bytes");
    ASSERT_NE(bytes, nullptr);
    const auto tokenizer = train_tokenizer(*bytes, {{(corpus / "train.txt").string()}}, {});
    for (const char* split : {"train.txt", "validation.txt", "test.txt"}) {
        const std::string text = read_file(corpus / split);
        ASSERT_GT(text.size(), 100000u) << split;
        std::vector<std::int32_t> ids;
        tokenizer->encode(text, ids);
        EXPECT_EQ(ids.size(), text.size());
        EXPECT_TRUE(tokenizer->decode(ids) == text) << split;
    }
}

}  // namespace
}  // namespace moelab::core

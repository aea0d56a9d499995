// Token shards: ids round-trip for 16- and 32-bit vocabularies, the document index, damaged and
// truncated shards refused with their name, interrupted writes leave nothing; and the streaming
// encoder cuts and encodes documents exactly as encoding the whole text would.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "core/data/dataset.h"
#include "core/data/file_fingerprint.h"
#include "core/data/token_shard.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/system/file_error.h"
#include "core/system/hash.h"
#include "core/system/remove_tree.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

class TokenShards : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ =
            fs::temp_directory_path() /
            ("moelab-shards-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
             "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        remove_tree(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { remove_tree(dir_); }

    // Documents of random ids below `vocab`, some empty.
    static std::vector<std::vector<std::int32_t>> documents(std::int64_t vocab, int count) {
        std::mt19937 rng(7);
        std::vector<std::vector<std::int32_t>> docs(count);
        for (auto& doc : docs) {
            doc.resize(rng() % 40);
            for (auto& id : doc) id = static_cast<std::int32_t>(rng() % vocab);
        }
        docs[3].clear();
        docs[0].push_back(static_cast<std::int32_t>(vocab - 1));  // the largest id
        return docs;
    }

    fs::path dir_;
};

TEST_F(TokenShards, RoundTripIdsAndDocumentEndsForNarrowAndWideVocabularies) {
    for (const std::int64_t vocab : {256L, 65536L, 65537L, 200000L}) {
        const fs::path file = dir_ / ("v" + std::to_string(vocab) + ".shard");
        const auto docs = documents(vocab, 25);
        TokenShardWriter writer(file, vocab);
        std::vector<std::int32_t> all;
        for (const auto& doc : docs) {
            writer.add_document(doc);
            all.insert(all.end(), doc.begin(), doc.end());
        }
        writer.finish();
        const MappedTokenShard shard(file, vocab);
        shard.verify();
        const TokenView view = shard.tokens();
        EXPECT_EQ(view.id_bytes(), vocab <= 65536 ? 2 : 4) << vocab;
        ASSERT_EQ(view.size(), static_cast<std::int64_t>(all.size())) << vocab;
        for (std::int64_t i = 0; i < view.size(); ++i) ASSERT_EQ(view[i], all[i]) << vocab;
        ASSERT_EQ(shard.documents(), 25);
        std::int64_t end = 0;
        for (int d = 0; d < 25; ++d) {
            end += static_cast<std::int64_t>(docs[d].size());
            EXPECT_EQ(shard.document_end(d), end) << vocab << " document " << d;
        }
        std::vector<std::uint64_t> counts(static_cast<std::size_t>(vocab), 0);
        for (const std::int32_t id : all) ++counts[static_cast<std::size_t>(id)];
        for (std::int64_t id = 0; id < vocab; ++id) {
            ASSERT_EQ(shard.token_counts()[id], counts[static_cast<std::size_t>(id)]) << vocab;
        }
        std::vector<std::int64_t> widened(5);
        view.copy_to(2, 5, widened.data());
        for (int i = 0; i < 5; ++i) EXPECT_EQ(widened[i], all[2 + i]);
    }
}

TEST_F(TokenShards, TruncatedDamagedAndForeignShardsAreRefusedWithTheirName) {
    const fs::path file = dir_ / "train.shard";
    {
        TokenShardWriter writer(file, 1000);
        for (const auto& doc : documents(1000, 10)) writer.add_document(doc);
        writer.finish();
    }
    auto refused = [&](const fs::path& path, std::int64_t vocab, const std::string& why) {
        try {
            MappedTokenShard shard(path, vocab);
            shard.verify();
            ADD_FAILURE() << "accepted " << path << " (" << why << ")";
        } catch (const FileError& error) {
            EXPECT_NE(std::string(error.what()).find(path.filename().string()), std::string::npos)
                << error.what();
            EXPECT_NE(std::string(error.what()).find(why), std::string::npos) << error.what();
        }
    };
    refused(file, 2000, "vocabulary of 1000, expected 2000");

    const fs::path truncated = dir_ / "truncated.shard";
    fs::copy_file(file, truncated);
    fs::resize_file(truncated, fs::file_size(file) - 8);
    refused(truncated, 1000, "truncated or damaged");
    fs::resize_file(truncated, 20);
    refused(truncated, 1000, "shorter than the 48-byte header");

    const fs::path flipped = dir_ / "flipped.shard";
    fs::copy_file(file, flipped);
    {
        std::fstream out(flipped, std::ios::in | std::ios::out | std::ios::binary);
        out.seekp(60);
        out.put('\x7f');
    }
    refused(flipped, 1000, "checksum");

    const fs::path text = dir_ / "text.shard";
    std::ofstream(text) << std::string(100, 'x');
    refused(text, 1000, "wrong magic");
}

// The checksum in the header is the documented formula, written out here over the file's words
// (Note [Token shard format]); bytes added in pieces of any size give the same value; and two
// flips of a word's top bit, which cancel under a plain multiply, are seen.
TEST_F(TokenShards, TheChecksumIsTheDocumentedWordFold) {
    const fs::path file = dir_ / "c.shard";
    {
        TokenShardWriter writer(file, 300);
        writer.add_document({1, 2, 3, 299, 7});  // 10 bytes: pieces that end inside words
        writer.add_document({0, 5, 5});
        writer.finish();
    }
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(bytes.size() % 8, 0u);
    auto fold = [](const std::string& data) {
        std::uint64_t h = 0;
        for (std::size_t at = 48; at < data.size(); at += 8) {
            std::uint64_t word = 0;
            for (int b = 7; b >= 0; --b)
                word = (word << 8) | static_cast<unsigned char>(data[at + b]);
            h = (h + word) * 0x9e3779b97f4a7c15ULL;
            h ^= h >> 29;
            h = (h << 31) | (h >> 33);
        }
        return h;
    };
    std::uint64_t stored = 0;
    for (int b = 7; b >= 0; --b) stored = (stored << 8) | static_cast<unsigned char>(bytes[40 + b]);
    EXPECT_EQ(stored, fold(bytes));

    ShardChecksum whole, pieces;
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data()) + 48;
    const std::size_t size = bytes.size() - 48;
    whole.add(data, size);
    for (std::size_t at = 0, piece = 1; at < size; at += piece, piece = piece % 11 + 1) {
        pieces.add(data + at, std::min(piece, size - at));
    }
    EXPECT_EQ(pieces.value(), whole.value());

    // Pairs of one-bit changes in neighbouring words, which a plain multiply-and-rotate lets
    // cancel (a top-bit flip becomes a single-bit flip 31 places down): every pair is seen.
    for (int first = 0; first < 64; ++first) {
        for (int second = 0; second < 64; ++second) {
            std::string twice = bytes;
            twice[48 + first / 8] = static_cast<char>(twice[48 + first / 8] ^ (1 << (first % 8)));
            twice[56 + second / 8] =
                static_cast<char>(twice[56 + second / 8] ^ (1 << (second % 8)));
            ASSERT_NE(fold(twice), fold(bytes)) << "bits " << first << " and " << second;
        }
    }
}

TEST_F(TokenShards, AnUnfinishedWriteLeavesNoShardAndNoPartialFile) {
    {
        TokenShardWriter writer(dir_ / "train.shard", 300);
        writer.add_document({1, 2, 3});
        EXPECT_THROW(writer.add_document({4, 300}),
                     std::invalid_argument);  // outside the vocabulary
    }
    EXPECT_TRUE(fs::is_empty(dir_));
}

// The streaming encoder against split_documents + encode of the whole text, with batches smaller
// than a document (one document each), of a few documents, and of the whole file.
TEST_F(TokenShards, StreamingEncodingEqualsEncodingTheWholeText) {
    const fs::path corpus = dir_ / "corpus.txt";
    const std::string text =
        "first line\nof the first document\n\n\n\nsecond\n\nthird, ending without a newline\n"
        "still third\n\nfourth é ü\n\n";
    std::ofstream(corpus, std::ios::binary) << text << "last";
    const PluginRegistry registry = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const auto tokenizer =
        train_tokenizer(*registry.find_tokenizer("bytes"), {{corpus.string()}}, {});
    std::vector<std::int32_t> expected;
    const auto documents = split_documents(text + "last");
    for (const std::string& document : documents) {
        tokenizer->encode(document, expected);
        expected.push_back(tokenizer->special_tokens().eos);
    }
    for (const std::size_t batch_bytes : {std::size_t{1}, std::size_t{7}, std::size_t{1} << 20}) {
        const fs::path file = dir_ / ("b" + std::to_string(batch_bytes) + ".shard");
        TokenShardWriter writer(file, tokenizer->vocab_size());
        EXPECT_EQ(encode_into_shard(*tokenizer, CorpusFile{corpus}, writer, batch_bytes),
                  static_cast<std::int64_t>(documents.size()));
        writer.finish();
        const MappedTokenShard shard(file, tokenizer->vocab_size());
        const TokenView view = shard.tokens();
        ASSERT_EQ(view.size(), static_cast<std::int64_t>(expected.size())) << batch_bytes;
        for (std::int64_t i = 0; i < view.size(); ++i) ASSERT_EQ(view[i], expected[i]) << i;
    }
}

// A warm start reads metadata only: with size and modification time unchanged the remembered
// hash comes back even though the bytes changed (which proves nothing was read; the documented
// caveat), and a new modification time or size brings the new hash.
TEST_F(TokenShards, FileHashesAreRememberedBySizeAndModificationTime) {
    const fs::path file = dir_ / "train.txt";
    const fs::path cache = dir_ / "cache";
    std::ofstream(file) << "first text";
    const std::string first = file_content_hash(file, cache);
    EXPECT_EQ(first, ContentHash().add_file(file).hex());
    const auto written = fs::last_write_time(file);

    std::ofstream(file) << "other text";  // same size
    fs::last_write_time(file, written);
    EXPECT_EQ(file_content_hash(file, cache), first);

    fs::last_write_time(file, written + std::chrono::seconds(1));
    const std::string second = file_content_hash(file, cache);
    EXPECT_EQ(second, ContentHash().add_file(file).hex());
    EXPECT_NE(second, first);

    std::ofstream(file) << "a longer text";
    fs::last_write_time(file, written + std::chrono::seconds(1));
    EXPECT_EQ(file_content_hash(file, cache), ContentHash().add_file(file).hex());
    EXPECT_THROW(file_content_hash(dir_ / "missing.txt", cache), FileError);
}

}  // namespace
}  // namespace moelab::core

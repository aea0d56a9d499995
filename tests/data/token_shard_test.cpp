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
// flips of a word's top bit, which cancel under a plain multiply, are seen, in neighbouring words
// (two lanes) and in words four apart (one after the other in one lane).
TEST_F(TokenShards, TheChecksumIsTheDocumentedFourLaneWordFold) {
    const fs::path file = dir_ / "c.shard";
    {
        TokenShardWriter writer(file, 300);
        writer.add_document({1, 2, 3, 299, 7});  // 10 bytes: pieces that end inside words
        writer.add_document({0, 5, 5});
        writer.add_document({8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
        writer.finish();
    }
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(bytes.size() % 8, 0u);
    auto step = [](std::uint64_t h, std::uint64_t word) {
        h = (h + word) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
        return (h << 31) | (h >> 33);
    };
    auto fold = [&](const std::string& data) {
        std::uint64_t lanes[4] = {0, 0, 0, 0};
        for (std::size_t at = 48, i = 0; at < data.size(); at += 8, ++i) {
            std::uint64_t word = 0;
            for (int b = 7; b >= 0; --b)
                word = (word << 8) | static_cast<unsigned char>(data[at + b]);
            lanes[i % 4] = step(lanes[i % 4], word);
        }
        std::uint64_t h = 0;
        for (const std::uint64_t lane : lanes) h = step(h, lane);
        return h;
    };
    std::uint64_t stored = 0;
    for (int b = 7; b >= 0; --b) stored = (stored << 8) | static_cast<unsigned char>(bytes[40 + b]);
    EXPECT_EQ(stored, fold(bytes));

    ShardChecksum whole, pieces, words;
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data()) + 48;
    const std::size_t size = bytes.size() - 48;
    ASSERT_GE(size, 200u) << "long enough for the four-word blocks and their remainders";
    whole.add(data, size);
    for (std::size_t at = 0, piece = 1; at < size; at += piece, piece = piece % 11 + 1) {
        pieces.add(data + at, std::min(piece, size - at));
    }
    // Pieces of 8, 16, ..., 56 bytes: blocks of four words that start in every lane.
    for (std::size_t at = 0, piece = 8; at < size; at += piece, piece = piece % 56 + 8) {
        words.add(data + at, std::min(piece, size - at));
    }
    EXPECT_EQ(whole.value(), fold(bytes));
    EXPECT_EQ(pieces.value(), whole.value());
    EXPECT_EQ(words.value(), whole.value());

    // Pairs of one-bit changes, which a plain multiply-and-rotate lets cancel (a top-bit flip
    // becomes a single-bit flip 31 places down): every pair is seen.
    for (const std::size_t apart : {std::size_t{8}, std::size_t{32}}) {
        for (int first = 0; first < 64; ++first) {
            for (int second = 0; second < 64; ++second) {
                std::string twice = bytes;
                const std::size_t a = 48 + first / 8, b = 48 + apart + second / 8;
                twice[a] = static_cast<char>(twice[a] ^ (1 << (first % 8)));
                twice[b] = static_cast<char>(twice[b] ^ (1 << (second % 8)));
                ASSERT_NE(fold(twice), fold(bytes))
                    << "bits " << first << " and " << second << ", " << apart << " bytes apart";
            }
        }
    }
}

// Chunks filled apart (as encoding workers fill them) and handed to the writer make the same
// file, byte for byte, as the documents added one by one; counts are right whether a chunk is
// folded into the totals from its tables (many tokens) or from its ids (few tokens in a large
// vocabulary), in the four-table layout of a small vocabulary and the one table of a large one.
TEST_F(TokenShards, ChunksMakeTheSameShardAsDocumentsOneByOne) {
    for (const std::int64_t vocab : {300L, 5000L, 70000L}) {
        const auto docs = documents(vocab, 40);
        const fs::path one_by_one = dir_ / ("one-" + std::to_string(vocab) + ".shard");
        const fs::path chunked = dir_ / ("chunks-" + std::to_string(vocab) + ".shard");
        {
            TokenShardWriter writer(one_by_one, vocab);
            for (std::size_t d = 0; d < docs.size(); ++d) {
                writer.add_document(docs[d], std::min(d % 3, docs[d].size()));
            }
            writer.finish();
        }
        {
            TokenShardWriter writer(chunked, vocab);
            ShardChunk first(vocab), second(vocab);
            // Chunks of 1, 2, ... documents, alternating between two reused chunks.
            std::size_t d = 0;
            for (std::size_t size = 1; d < docs.size(); ++size) {
                ShardChunk& chunk = size % 2 == 0 ? second : first;
                std::size_t added = 0;
                for (; added < size && d < docs.size(); ++added, ++d) {
                    chunk.add_document(docs[d], std::min(d % 3, docs[d].size()));
                }
                EXPECT_EQ(chunk.documents(), added);
                writer.add_chunk(chunk);
                EXPECT_EQ(chunk.documents(), 0u) << "the writer empties a chunk it takes";
            }
            writer.finish();
        }
        std::ifstream a(one_by_one, std::ios::binary), b(chunked, std::ios::binary);
        const std::string expected((std::istreambuf_iterator<char>(a)),
                                   std::istreambuf_iterator<char>());
        const std::string got((std::istreambuf_iterator<char>(b)),
                              std::istreambuf_iterator<char>());
        EXPECT_EQ(got, expected) << vocab;
        const MappedTokenShard shard(chunked, vocab);
        shard.verify();  // the counts against a recount of the ids, the checksum
        std::uint64_t counted = 0;
        for (std::int64_t id = 0; id < vocab; ++id) counted += shard.token_counts()[id];
        EXPECT_EQ(counted, static_cast<std::uint64_t>(shard.tokens().size()));
    }
}

// A chunk of many tokens in a small vocabulary (four tables, folded table by table) and one of
// fewer tokens than its tables (folded from its ids) count the same ids as a naive count.
TEST_F(TokenShards, AChunksCountsAreFoldedRightFromItsTablesAndFromItsIds) {
    const fs::path file = dir_ / "counts.shard";
    std::vector<std::uint64_t> expected(300, 0);
    {
        TokenShardWriter writer(file, 300);
        ShardChunk chunk(300);
        std::mt19937 rng(11);
        for (const std::size_t tokens : {std::size_t{5000}, std::size_t{7}, std::size_t{1203}}) {
            std::vector<std::int32_t> ids(tokens);
            for (std::int32_t& id : ids) {
                // Runs of one id, as text has: the four tables split them.
                id = rng() % 4 == 0 ? static_cast<std::int32_t>(rng() % 300) : 32;
                ++expected[static_cast<std::size_t>(id)];
            }
            chunk.add_document(ids);
            writer.add_chunk(chunk);
        }
        writer.finish();
    }
    const MappedTokenShard shard(file, 300);
    shard.verify();
    for (std::size_t id = 0; id < 300; ++id)
        ASSERT_EQ(shard.token_counts()[id], expected[id]) << id;
}

// A vocabulary outside what int32 ids can hold is refused before a file exists.
TEST_F(TokenShards, AVocabularyOutsideOneToTwoToThe31IsRefused) {
    for (const std::int64_t vocab :
         {std::int64_t{0}, std::int64_t{-5}, (std::int64_t{1} << 31) + 1}) {
        EXPECT_THROW(ShardChunk{vocab}, std::invalid_argument) << vocab;
        EXPECT_THROW(TokenShardWriter(dir_ / "bad.shard", vocab), std::invalid_argument) << vocab;
    }
    EXPECT_TRUE(fs::is_empty(dir_));
}

// A shard larger than the writer's writeback step (the disk is asked to start writing every 32 MiB
// as the shard grows) is written whole: every id, the counts, the checksum.
TEST_F(TokenShards, AShardLargerThanTheWritebackStepIsWrittenWhole) {
    const fs::path file = dir_ / "large.shard";
    constexpr std::int64_t kVocab = 50000, kDocuments = 40, kLength = 500000;  // 40 MB of ids
    {
        TokenShardWriter writer(file, kVocab);
        ShardChunk chunk(kVocab);
        std::vector<std::int32_t> ids(kLength);
        for (std::int64_t d = 0; d < kDocuments; ++d) {
            for (std::int64_t i = 0; i < kLength; ++i) {
                ids[static_cast<std::size_t>(i)] =
                    static_cast<std::int32_t>((d * 7919 + i) % kVocab);
            }
            chunk.add_document(ids);
            writer.add_chunk(chunk);
        }
        writer.finish();
    }
    const MappedTokenShard shard(file, kVocab);
    shard.verify();
    const TokenView view = shard.tokens();
    ASSERT_EQ(view.size(), kDocuments * kLength);
    for (const std::int64_t at :
         {std::int64_t{0}, kLength - 1, 17 * kLength + 12345, kDocuments * kLength - 1}) {
        EXPECT_EQ(view[at], (at / kLength * 7919 + at % kLength) % kVocab) << at;
    }
    EXPECT_EQ(shard.document_end(kDocuments - 1), kDocuments * kLength);
}

// A chunk refuses an id outside the vocabulary (negative ones too) and a prompt longer than its
// document, and is left as it was: the documents before are still written whole.
TEST_F(TokenShards, AChunkRefusesBadDocumentsAndKeepsTheOnesBefore) {
    ShardChunk chunk(300);
    chunk.add_document(std::vector<std::int32_t>{1, 2, 3});
    for (const std::vector<std::int32_t>& bad :
         {std::vector<std::int32_t>{4, 300}, std::vector<std::int32_t>{-1, 5}}) {
        try {
            chunk.add_document(bad);
            ADD_FAILURE() << "accepted an id outside [0, 300)";
        } catch (const std::invalid_argument& error) {
            EXPECT_NE(std::string(error.what()).find("outside [0, 300)"), std::string::npos)
                << error.what();
        }
    }
    EXPECT_THROW(chunk.add_document(std::vector<std::int32_t>{1, 2}, 3), std::invalid_argument);
    EXPECT_EQ(chunk.documents(), 1u);
    const fs::path file = dir_ / "kept.shard";
    TokenShardWriter writer(file, 300);
    writer.add_chunk(chunk);
    writer.finish();
    const MappedTokenShard shard(file, 300);
    shard.verify();
    ASSERT_EQ(shard.tokens().size(), 3);
    EXPECT_EQ(shard.tokens()[2], 3);
    EXPECT_EQ(shard.token_counts()[4], 0u);
    EXPECT_THROW(TokenShardWriter(dir_ / "other.shard", 301).add_chunk(chunk),
                 std::invalid_argument);
}

// A shard of an earlier format (its checksum is another one) is refused at open, saying so.
TEST_F(TokenShards, AShardOfAnEarlierFormatIsRefusedAsOneToEncodeAgain) {
    const fs::path file = dir_ / "old.shard";
    {
        TokenShardWriter writer(file, 300);
        writer.add_document({1, 2, 3});
        writer.finish();
    }
    {
        std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
        out.seekp(8);
        const char format_two[4] = {2, 0, 0, 0};
        out.write(format_two, 4);
    }
    try {
        const MappedTokenShard shard(file, 300);
        ADD_FAILURE() << "a format-2 shard was accepted";
    } catch (const FileError& error) {
        EXPECT_NE(std::string(error.what())
                      .find("old.shard: token shard format 2, written by an earlier moelab "
                            "(this one reads formats 4 and 5)"),
                  std::string::npos)
            << error.what();
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

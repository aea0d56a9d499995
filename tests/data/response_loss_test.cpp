// Response-only loss (Note [Response-only loss]): (prompt, response) pairs read from JSONL, their
// prompt lengths kept in token shards, masks on training and evaluation windows equal to a
// per-token reconstruction from the documents, and the masked next-token loss against the
// written-out cross-entropy.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/data/batcher.h"
#include "core/data/dataset.h"
#include "core/data/document_reader.h"
#include "core/data/mixture_batcher.h"
#include "core/data/token_shard.h"
#include "core/eval/evaluator.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/system/file_error.h"
#include "core/system/remove_tree.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

class ResponseLoss : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("moelab-pairs-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        remove_tree(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { remove_tree(dir_); }

    CorpusFile pairs_file(const std::string& name, const std::string& content) const {
        const fs::path path = dir_ / name;
        std::ofstream(path, std::ios::binary) << content;
        CorpusFile file;
        file.path = path;
        file.format = DocumentFormat::kPairs;
        file.prompt_field = "q";
        file.response_field = "a";
        return file;
    }

    static std::vector<Document> read_all(const CorpusFile& file) {
        std::vector<Document> documents;
        const auto reader = open_documents(file);
        for (auto batch = reader->next_batch(5); !batch.empty(); batch = reader->next_batch(5)) {
            documents.insert(documents.end(), batch.begin(), batch.end());
        }
        return documents;
    }

    static std::string error_of(const CorpusFile& file) {
        try {
            read_all(file);
        } catch (const FileError& error) {
            return error.what();
        }
        return "";
    }

    fs::path dir_;
};

TEST_F(ResponseLoss, PairsAreReadAsPromptThenResponseAndPairsWithoutAResponseAreSkipped) {
    const auto documents = read_all(
        pairs_file("p.jsonl",
                   "{\"q\": \"2+2=\", \"a\": \"4\"}\n\n{\"q\": \"\", \"a\": \"hello\", \"x\": 1}\n"
                   "{\"q\": \"no answer\", \"a\": \"\"}\n{\"a\": \"é!\", \"q\": \"say \"}\n"));
    ASSERT_EQ(documents.size(), 3u);
    EXPECT_EQ(documents[0].text, "2+2=4");
    EXPECT_EQ(documents[0].prompt_bytes, 4u);
    EXPECT_EQ(documents[1].text, "hello");
    EXPECT_EQ(documents[1].prompt_bytes, 0u);
    EXPECT_EQ(documents[2].text, "say é!");
    EXPECT_EQ(documents[2].prompt_bytes, 4u);
}

TEST_F(ResponseLoss, AMalformedPairNamesTheFileTheLineAndTheField) {
    const std::string missing =
        error_of(pairs_file("m.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\n{\"a\": \"y\"}\n"));
    EXPECT_NE(missing.find("m.jsonl"), std::string::npos) << missing;
    EXPECT_NE(missing.find("line 2"), std::string::npos) << missing;
    EXPECT_NE(missing.find("no field \"q\""), std::string::npos) << missing;
    EXPECT_NE(missing.find("prompt_field"), std::string::npos) << missing;
    const std::string wrong = error_of(pairs_file("w.jsonl", "{\"q\": \"x\", \"a\": 3}\n"));
    EXPECT_NE(wrong.find("line 1: field \"a\" is number, expected a string"), std::string::npos)
        << wrong;
    const std::string array = error_of(pairs_file("a.jsonl", "[1]\n"));
    EXPECT_NE(array.find("a prompt in \"q\" and a response in \"a\""), std::string::npos) << array;
}

// Documents of random lengths and prompts, their concatenation, and the reconstruction the tests
// compare with: counted[i] is whether token i lies outside every prompt.
struct PromptedStream {
    std::vector<std::int32_t> ids;
    std::vector<std::uint64_t> ends, prompts;
    std::vector<bool> counted;

    PromptedStream(int documents, std::uint32_t seed) {
        std::mt19937 rng(seed);
        for (int d = 0; d < documents; ++d) {
            const std::size_t prompt = rng() % 30, response = 1 + rng() % 12;
            for (std::size_t i = 0; i < prompt + response; ++i) {
                ids.push_back(static_cast<std::int32_t>(ids.size() % 200));
                counted.push_back(i >= prompt);
            }
            ends.push_back(ids.size());
            prompts.push_back(prompt);
        }
    }
    TokenView view() const {
        return TokenView(ids).with_loss_mask(
            LossMask(ends.data(), prompts.data(), static_cast<std::int64_t>(ends.size())));
    }
};

TEST_F(ResponseLoss, ShardsKeepPromptLengthsAndGiveTheMaskOfEveryToken) {
    const PromptedStream stream(40, 1);
    const fs::path file = dir_ / "p.shard";
    {
        TokenShardWriter writer(file, 256);
        std::size_t begin = 0;
        for (std::size_t d = 0; d < stream.ends.size(); ++d) {
            writer.add_document({stream.ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                 stream.ids.begin() + static_cast<std::ptrdiff_t>(stream.ends[d])},
                                stream.prompts[d]);
            begin = stream.ends[d];
        }
        EXPECT_THROW(writer.add_document({1, 2}, 3), std::invalid_argument);
        writer.finish();
    }
    const MappedTokenShard shard(file, 256);
    ASSERT_TRUE(shard.has_prompts());
    shard.verify();
    std::int64_t prompt_tokens = 0;
    for (const auto p : stream.prompts) prompt_tokens += static_cast<std::int64_t>(p);
    EXPECT_EQ(shard.prompt_tokens(), prompt_tokens);
    const TokenView view = shard.tokens();
    ASSERT_EQ(view.size(), static_cast<std::int64_t>(stream.ids.size()));
    // Every range, including ones that start and end inside documents.
    const auto n = static_cast<std::int64_t>(stream.ids.size());
    for (std::int64_t begin = 0; begin < n; begin += 7) {
        const std::int64_t count = std::min<std::int64_t>(23, n - begin);
        bool flags[23];
        view.loss_mask().fill(begin, count, flags);
        for (std::int64_t i = 0; i < count; ++i) {
            ASSERT_EQ(flags[i], stream.counted[static_cast<std::size_t>(begin + i)]) << begin + i;
        }
    }

    // Without prompts the shard is format 4, the same sections as ever, and counts everything.
    const fs::path plain = dir_ / "plain.shard";
    {
        TokenShardWriter writer(plain, 256);
        writer.add_document(stream.ids, 0);
        writer.finish();
    }
    const MappedTokenShard plain_shard(plain, 256);
    EXPECT_FALSE(plain_shard.has_prompts());
    EXPECT_TRUE(plain_shard.tokens().loss_mask().counts_every_token());
    EXPECT_EQ(fs::file_size(plain), 48 + (stream.ids.size() * 2 + 7) / 8 * 8 + 8 + 256 * 8);
    EXPECT_EQ(fs::file_size(file) - fs::file_size(plain),
              (stream.ends.size() - 1) * 8 + stream.ends.size() * 8)
        << "one more document end and one prompt length per document";
}

TEST_F(ResponseLoss, TrainingAndEvaluationWindowsCarryTheMaskOfTheirTargets) {
    const PromptedStream stream(60, 2);
    const TokenView view = stream.view();
    const std::int64_t seq_len = 16;
    TrainBatcher batcher(view, seq_len, 5, 3);
    ASSERT_TRUE(batcher.has_prompts());
    for (int b = 0; b < 8; ++b) {
        const TokenBatch batch = batcher.next();
        ASSERT_TRUE(batch.loss_mask.defined());
        ASSERT_EQ(batch.loss_mask.sizes(), (at::IntArrayRef{5, seq_len}));
        for (std::int64_t r = 0; r < 5; ++r) {
            // Token ids count positions (mod 200); the window's start is a multiple of seq_len.
            const std::int64_t start =
                batcher.window_at((batcher.position().cursor - 5 + r + batcher.windows()) %
                                  batcher.windows()) *
                seq_len;
            for (std::int64_t i = 0; i < seq_len; ++i) {
                ASSERT_EQ(batch.loss_mask[r][i].item<bool>(),
                          stream.counted[static_cast<std::size_t>(start + 1 + i)])
                    << "row " << r << " target " << i;
            }
        }
    }
    // Evaluation: every counted token but the first is a target exactly once.
    std::int64_t expected = 0;
    for (std::size_t i = 1; i < stream.counted.size(); ++i) expected += stream.counted[i] ? 1 : 0;
    std::int64_t targets = 0;
    for (const TokenBatch& batch : evaluation_batches(view, seq_len, 3, 0)) {
        targets += batch.loss_targets();
    }
    EXPECT_EQ(targets, expected);
}

TEST_F(ResponseLoss, AMixtureMasksOnlyTheRowsOfItsPairsSource) {
    const PromptedStream pairs(60, 4);
    std::vector<std::int32_t> text(500);
    for (std::size_t i = 0; i < text.size(); ++i) text[i] = 1000 + static_cast<std::int32_t>(i);
    MixtureBatcher mixture({{"text", 1.0, TokenView(text)}, {"pairs", 1.0, pairs.view()}}, 8, 16,
                           5);
    const TokenBatch batch = mixture.next();
    ASSERT_TRUE(batch.loss_mask.defined());
    int text_rows = 0, masked_rows = 0;
    for (std::int64_t r = 0; r < 16; ++r) {
        const bool from_text = batch.tokens[r][0].item<std::int64_t>() >= 1000;
        const bool all_counted = batch.loss_mask[r].all().item<bool>();
        if (from_text) {
            ++text_rows;
            EXPECT_TRUE(all_counted) << "row " << r;
        } else if (!all_counted) {
            ++masked_rows;
        }
    }
    EXPECT_GT(text_rows, 0);
    EXPECT_GT(masked_rows, 0);
}

// The masked loss against the cross-entropy written out: -log softmax(logits)[target], summed
// over counted targets, and its mean over them.
TEST_F(ResponseLoss, TheLossCountsOnlyTheMaskedTargets) {
    at::manual_seed(0);
    const at::Tensor logits = at::randn({2, 5, 7}, at::kDouble);
    TokenBatch batch;
    batch.tokens = at::randint(0, 7, {2, 6}, at::kLong);
    batch.loss_mask =
        at::tensor({1, 0, 0, 1, 1, 0, 0, 0, 0, 1}, at::kLong).to(at::kBool).view({2, 5});
    double sum = 0;
    int counted = 0;
    for (int r = 0; r < 2; ++r) {
        for (int t = 0; t < 5; ++t) {
            if (!batch.loss_mask[r][t].item<bool>()) continue;
            double denominator = 0;
            for (int v = 0; v < 7; ++v) denominator += std::exp(logits[r][t][v].item<double>());
            const auto target = batch.tokens[r][t + 1].item<std::int64_t>();
            sum += std::log(denominator) - logits[r][t][target].item<double>();
            ++counted;
        }
    }
    EXPECT_EQ(batch.loss_targets(), counted);
    EXPECT_NEAR(next_token_loss(logits, batch, /*sum=*/true).item<double>(), sum, 1e-5);
    EXPECT_NEAR(next_token_loss(logits, batch, /*sum=*/false).item<double>(), sum / counted, 1e-6);
}

// Through the tokenizer: a prompt is encoded on its own, the response after it, then the
// end-of-document id; the shard's prompt lengths are the prompts' token counts.
TEST_F(ResponseLoss, EncodingAPairsFileKeepsEachPromptsLength) {
    const CorpusFile file =
        pairs_file("train.jsonl",
                   "{\"q\": \"Q: two?\\n\", \"a\": \"A: 2\"}\n{\"q\": \"\", \"a\": \"free\"}\n");
    const fs::path text = dir_ / "t.txt";
    std::ofstream(text) << "training text";
    const PluginRegistry registry = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const auto tokenizer =
        train_tokenizer(*registry.find_tokenizer("bytes"), {{text.string()}}, {});
    const fs::path shard_file = dir_ / "pairs.shard";
    TokenShardWriter writer(shard_file, tokenizer->vocab_size());
    EXPECT_EQ(encode_into_shard(*tokenizer, file, writer), 2);
    writer.finish();
    const MappedTokenShard shard(shard_file, tokenizer->vocab_size());
    ASSERT_TRUE(shard.has_prompts());
    // "Q: two?\n" is 8 bytes; the documents are 8 + 4 + 1 and 4 + 1 tokens.
    EXPECT_EQ(shard.prompt_tokens(), 8);
    EXPECT_EQ(shard.document_end(0), 13);
    EXPECT_EQ(shard.document_end(1), 18);
    bool flags[18];
    shard.tokens().loss_mask().fill(0, 18, flags);
    for (int i = 0; i < 18; ++i) EXPECT_EQ(flags[i], i >= 8) << i;
    EXPECT_EQ(shard.tokens()[12], tokenizer->special_tokens().eos);
}

}  // namespace
}  // namespace moelab::core

// Packed training windows (deterministic per seed, every window once per epoch, resumable at any
// position), evaluation windows (every token but the first predicted exactly once), documents.

#include <gtest/gtest.h>

#include <set>

#include "core/data/batcher.h"
#include "core/data/dataset.h"

namespace moelab::core {
namespace {

std::vector<std::int32_t> counting(std::int32_t n) {
    std::vector<std::int32_t> v(n);
    for (std::int32_t i = 0; i < n; ++i) v[i] = i;
    return v;
}

TEST(TrainBatcher, VisitsEveryWindowOncePerEpochInASeededOrder) {
    const auto tokens = counting(8 * 10 + 1);  // 10 windows of 8 (+1 target)
    TrainBatcher a(tokens, 8, 5, 42), b(tokens, 8, 5, 42), c(tokens, 8, 5, 43);
    std::set<std::int64_t> starts;
    std::vector<at::Tensor> epoch;
    for (int i = 0; i < 2; ++i) {
        const at::Tensor batch = a.next();
        ASSERT_EQ(batch.sizes(), (at::IntArrayRef{5, 9}));
        for (std::int64_t r = 0; r < 5; ++r) {
            starts.insert(batch[r][0].item<std::int64_t>());
            // A window is 9 consecutive tokens.
            EXPECT_EQ(batch[r][8].item<std::int64_t>() - batch[r][0].item<std::int64_t>(), 8);
        }
        EXPECT_TRUE(at::equal(batch, b.next()));
        epoch.push_back(batch);
    }
    EXPECT_EQ(starts.size(), 10u);
    EXPECT_FALSE(at::equal(at::cat(epoch), at::cat({c.next(), c.next()})));
    EXPECT_EQ(a.position().epoch, 0);
    EXPECT_EQ(a.position().cursor, 10);
    a.next();  // crosses into epoch 1
    EXPECT_EQ(a.position().epoch, 1);
}

TEST(TrainBatcher, RestoringAPositionContinuesTheSameSequence) {
    const auto tokens = counting(16 * 7 + 1);
    TrainBatcher full(tokens, 16, 3, 9);
    for (int i = 0; i < 4; ++i) full.next();
    const DataPosition middle = full.position();
    std::vector<at::Tensor> expected;
    for (int i = 0; i < 5; ++i) expected.push_back(full.next());
    TrainBatcher resumed(tokens, 16, 3, 9);
    resumed.restore(middle);
    for (const at::Tensor& batch : expected) EXPECT_TRUE(at::equal(batch, resumed.next()));
}

TEST(TrainBatcher, TooLittleTextIsAClearError) {
    const auto tokens = counting(5);
    try {
        TrainBatcher batcher(tokens, 8, 2, 1);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("data.seq_len"), std::string::npos);
    }
}

TEST(EvaluationBatches, PredictEveryTokenButTheFirstExactlyOnce) {
    const auto tokens = counting(103);
    const auto batches = evaluation_batches(tokens, 10, 4, 0);
    std::vector<int> predicted(103, 0);
    for (const at::Tensor& batch : batches) {
        EXPECT_LE(batch.size(0), 4);
        for (std::int64_t r = 0; r < batch.size(0); ++r) {
            for (std::int64_t i = 1; i < batch.size(1); ++i) {
                ++predicted[batch[r][i].item<std::int64_t>()];
            }
        }
    }
    EXPECT_EQ(predicted[0], 0);
    for (int i = 1; i < 103; ++i) EXPECT_EQ(predicted[i], 1) << i;
    EXPECT_EQ(evaluation_batches(tokens, 10, 4, 1).size(), 1u);
}

TEST(SplitDocuments, SplitsAtBlankLinesAndKeepsLineBreaks) {
    const auto docs = split_documents("a b\nc\n\n\nd\n\ne f");
    ASSERT_EQ(docs.size(), 3u);
    EXPECT_EQ(docs[0], "a b\nc\n");
    EXPECT_EQ(docs[1], "d\n");
    EXPECT_EQ(docs[2], "e f\n");
}

}  // namespace
}  // namespace moelab::core

// Packed training windows (deterministic per seed, every window once per epoch, resumable at any
// position), evaluation windows (every token but the first predicted exactly once), documents.

#include <gtest/gtest.h>

#include <algorithm>
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
        const at::Tensor batch = a.next().tokens;
        ASSERT_EQ(batch.sizes(), (at::IntArrayRef{5, 9}));
        for (std::int64_t r = 0; r < 5; ++r) {
            starts.insert(batch[r][0].item<std::int64_t>());
            // A window is 9 consecutive tokens.
            EXPECT_EQ(batch[r][8].item<std::int64_t>() - batch[r][0].item<std::int64_t>(), 8);
        }
        EXPECT_TRUE(at::equal(batch, b.next().tokens));
        epoch.push_back(batch);
    }
    EXPECT_EQ(starts.size(), 10u);
    EXPECT_FALSE(at::equal(at::cat(epoch), at::cat({c.next().tokens, c.next().tokens})));
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
    for (int i = 0; i < 5; ++i) expected.push_back(full.next().tokens);
    TrainBatcher resumed(tokens, 16, 3, 9);
    resumed.restore(middle);
    for (const at::Tensor& batch : expected) EXPECT_TRUE(at::equal(batch, resumed.next().tokens));
}

// Above kShuffledWindowsMax windows the order is computed per position (Note [Window order]): still
// every window exactly once per epoch, the same order for the same seed and epoch, another order
// for another epoch, and a restored position continues it.
TEST(TrainBatcher, ALargeCorpusVisitsEveryWindowOncePerEpochWithoutStoringTheOrder) {
    const std::int64_t windows = TrainBatcher::kShuffledWindowsMax + 12345;
    const auto tokens = counting(static_cast<std::int32_t>(windows + 1));  // seq_len 1
    const std::int64_t batch = 4096;
    TrainBatcher a(tokens, 1, batch, 5), b(tokens, 1, batch, 5);
    std::vector<bool> seen(static_cast<std::size_t>(windows), false);
    std::int64_t visited = 0, first_window = -1;
    while (a.position().epoch == 0 && visited < windows) {
        const std::int64_t take = std::min(batch, windows - visited);
        const at::Tensor rows = a.next().tokens;
        ASSERT_TRUE(at::equal(rows, b.next().tokens));
        const std::int64_t* data = rows.data_ptr<std::int64_t>();
        for (std::int64_t r = 0; r < take; ++r) {
            const std::int64_t window = data[2 * r];
            ASSERT_EQ(data[2 * r + 1], window + 1);
            ASSERT_FALSE(seen[static_cast<std::size_t>(window)]) << "window " << window << " twice";
            seen[static_cast<std::size_t>(window)] = true;
            if (first_window < 0) first_window = window;
        }
        visited += take;
    }
    EXPECT_EQ(visited, windows);
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), windows);
    // The next epoch: another order, and a restored position continues it.
    const DataPosition next_epoch{1, 0};
    TrainBatcher c(tokens, 1, 8, 5), d(tokens, 1, 8, 5);
    c.restore(next_epoch);
    d.restore(next_epoch);
    const at::Tensor epoch1 = c.next().tokens;
    EXPECT_NE(epoch1[0][0].item<std::int64_t>(), first_window);
    EXPECT_TRUE(at::equal(epoch1, d.next().tokens));
}

// A position from a checkpoint of another corpus is refused, not used to index past the windows.
TEST(TrainBatcher, APositionBeyondTheWindowsIsRefused) {
    const auto tokens = counting(8 * 10 + 1);  // 10 windows
    TrainBatcher batcher(tokens, 8, 5, 1);
    batcher.restore({2, 10});  // the end of an epoch is a valid position
    EXPECT_THROW(batcher.restore({0, 11}), std::runtime_error);
    EXPECT_THROW(batcher.restore({-1, 0}), std::runtime_error);
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
    for (const TokenBatch& token_batch : batches) {
        const at::Tensor& batch = token_batch.tokens;
        EXPECT_FALSE(token_batch.loss_mask.defined()) << "plain tokens: every target counts";
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

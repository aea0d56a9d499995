// Mixtures of sources: one source reads exactly what TrainBatcher reads; sources are drawn in
// proportion to their weights and each goes through its own epochs; a restored position continues
// bit for bit; data-parallel parts are disjoint and cover every epoch.

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "core/data/mixture_batcher.h"

namespace moelab::core {
namespace {

// Ids base, base + 1, ...: a window is identified by its first id.
std::vector<std::int32_t> ids_from(std::int32_t base, std::int32_t count) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
    for (std::int32_t i = 0; i < count; ++i) ids[static_cast<std::size_t>(i)] = base + i;
    return ids;
}

// The documented order, written out: a Fisher-Yates shuffle driven by std::mt19937_64 seeded with
// seed ^ (0x9e3779b97f4a7c15 * (epoch + 1)) (Note [Window order]), as runs have always read.
TEST(TrainBatcher, TheFirstEpochIsTheDocumentedFisherYatesOrder) {
    const auto ids = ids_from(0, 8 * 300 + 1);
    std::vector<std::int64_t> order(300);
    for (std::int64_t i = 0; i < 300; ++i) order[static_cast<std::size_t>(i)] = i;
    std::mt19937_64 rng(77 ^ 0x9e3779b97f4a7c15ULL);
    for (std::int64_t i = 299; i > 0; --i) {
        std::swap(order[static_cast<std::size_t>(i)],
                  order[static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(i + 1))]);
    }
    MixtureBatcher mixture({{"only", 1.0, ids}}, 8, 1, 77);
    for (std::int64_t w = 0; w < 300; ++w) {
        ASSERT_EQ(mixture.next().tokens[0][0].item<std::int64_t>(),
                  order[static_cast<std::size_t>(w)] * 8)
            << w;
    }
}

TEST(MixtureBatcher, OneSourceReadsExactlyWhatTrainBatcherReads) {
    const auto ids = ids_from(0, 1000);
    MixtureBatcher mixture({{"only", 2.5, ids}}, 8, 5, 77);
    TrainBatcher plain(ids, 8, 5, 77);
    for (int b = 0; b < 60; ++b) {  // several epochs of 124 windows
        ASSERT_TRUE(at::equal(mixture.next().tokens, plain.next().tokens)) << "batch " << b;
    }
    EXPECT_EQ(mixture.position().sources[0].epoch, plain.position().epoch);
    EXPECT_EQ(mixture.position().sources[0].cursor, plain.position().cursor);
}

TEST(MixtureBatcher, SourcesAreDrawnInProportionToWeightEachThroughItsOwnEpochs) {
    // Source a: 100 windows of 4 tokens, ids below 10000; source b: 50 windows, ids from 10000.
    const auto a = ids_from(0, 401), b = ids_from(10000, 201);
    MixtureBatcher mixture({{"a", 3.0, a}, {"b", 1.0, b}}, 4, 8, 5);
    const int batches = 5000;  // 40000 sequences
    std::int64_t from_a = 0;
    std::vector<std::int64_t> a_windows, b_windows;
    for (int i = 0; i < batches; ++i) {
        const at::Tensor batch = mixture.next().tokens;
        for (std::int64_t row = 0; row < batch.size(0); ++row) {
            const std::int64_t first = batch[row][0].item<std::int64_t>();
            // A window is 5 consecutive ids of one source, starting at a multiple of 4.
            EXPECT_EQ(batch[row][4].item<std::int64_t>(), first + 4);
            if (first < 10000) {
                ++from_a;
                a_windows.push_back(first / 4);
            } else {
                b_windows.push_back((first - 10000) / 4);
            }
        }
    }
    // Binomial(40000, 0.75): standard deviation 0.0022; five of them.
    EXPECT_NEAR(static_cast<double>(from_a) / (batches * 8), 0.75, 0.011);
    // Every completed epoch of a source visits each of its windows exactly once.
    for (const auto& [windows, count] : {std::pair{&a_windows, 100}, std::pair{&b_windows, 50}}) {
        ASSERT_GT(windows->size(), static_cast<std::size_t>(3 * count));
        for (std::size_t epoch = 0; (epoch + 1) * count <= windows->size(); ++epoch) {
            std::set<std::int64_t> seen(windows->begin() + epoch * count,
                                        windows->begin() + (epoch + 1) * count);
            ASSERT_EQ(seen.size(), static_cast<std::size_t>(count)) << "epoch " << epoch;
        }
    }
    // The choice is a function of (seed, sequence): another batcher agrees draw by draw.
    MixtureBatcher again({{"a", 3.0, a}, {"b", 1.0, b}}, 4, 8, 5);
    for (std::int64_t s = 0; s < 1000; ++s) ASSERT_EQ(again.source_of(s), mixture.source_of(s));
}

TEST(MixtureBatcher, RestoringAPositionInTheMiddleOfAnEpochContinuesBitForBit) {
    const auto a = ids_from(0, 333), b = ids_from(5000, 129), c = ids_from(9000, 77);
    const std::vector<MixtureSource> sources = {{"a", 1.0, a}, {"b", 2.0, b}, {"c", 0.5, c}};
    MixtureBatcher whole(sources, 8, 3, 11);
    for (int i = 0; i < 37; ++i) whole.next();
    const MixturePosition saved = whole.position();
    ASSERT_GT(saved.sources[1].cursor, 0);  // mid-epoch
    MixtureBatcher resumed(sources, 8, 3, 11);
    resumed.restore(saved);
    for (int i = 0; i < 40; ++i) {
        ASSERT_TRUE(at::equal(whole.next().tokens, resumed.next().tokens)) << "batch " << i;
    }
    MixturePosition wrong = saved;
    wrong.sources.pop_back();
    EXPECT_THROW(resumed.restore(wrong), std::runtime_error);
}

TEST(MixtureBatcher, WeightsMustBePositiveAndSourcesLongEnough) {
    const auto ids = ids_from(0, 100);
    EXPECT_THROW(MixtureBatcher({{"a", 0.0, ids}}, 8, 1, 1), std::invalid_argument);
    EXPECT_THROW(MixtureBatcher({{"a", -1.0, ids}}, 8, 1, 1), std::invalid_argument);
    const auto tiny = ids_from(0, 5);
    try {
        MixtureBatcher({{"a", 1.0, ids}, {"short", 1.0, tiny}}, 8, 1, 1);
        FAIL() << "no error";
    } catch (const std::runtime_error& error) {
        EXPECT_NE(std::string(error.what()).find("source 'short': "), std::string::npos)
            << error.what();
    }
}

}  // namespace
}  // namespace moelab::core

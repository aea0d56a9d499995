// HARPE's base sets (plugins/attention/harpe/base_sets.h): the preset against Table 2 of the
// paper, the uniform spread, the waveform against its formula, and the extrema and the greedy
// complementarity selection on small cases worked out by hand.

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "base_sets.h"

namespace moelab::plugins::harpe {
namespace {

TEST(HarpeBases, ThePresetIsTable2) {
    // methods.md §5.2, Table 2, heads 1..32, x 1e6.
    const double table2[] = {1.00, 1.15, 1.30, 1.45, 2.17, 2.20, 2.23, 2.47, 2.50, 2.65, 2.68,
                             2.71, 2.74, 2.80, 2.83, 2.92, 3.01, 3.04, 3.10, 3.13, 3.16, 3.22,
                             3.43, 3.46, 3.61, 3.88, 4.09, 4.15, 4.39, 4.45, 4.51, 4.54};
    const std::vector<double>& preset = harpe32_bases();
    ASSERT_EQ(preset.size(), 32u);
    for (std::size_t h = 0; h < 32; ++h) EXPECT_DOUBLE_EQ(preset[h], table2[h] * 1e6) << h;
}

TEST(HarpeBases, UniformSetsSpreadEvenlyInEitherOrder) {
    EXPECT_EQ(uniform_bases(5, 10, 50, false), (std::vector<double>{10, 20, 30, 40, 50}));
    EXPECT_EQ(uniform_bases(5, 10, 50, true), (std::vector<double>{50, 40, 30, 20, 10}));
    EXPECT_EQ(uniform_bases(1, 10, 50, false), (std::vector<double>{10}));
}

// head_dim 4: w_b(m) = (2 / 2) (cos(m) + cos(m / sqrt(b))).
TEST(HarpeBases, TheWaveformIsTheRopeScoreBound) {
    const std::vector<double> wave = attention_waveform(400.0, 4, 50);
    ASSERT_EQ(wave.size(), 50u);
    for (const int m : {1, 2, 17, 50}) {
        EXPECT_NEAR(wave[m - 1], std::cos(m) + std::cos(m / 20.0), 1e-12) << m;
    }
}

TEST(HarpeBases, ExtremaAreTheHighestPeaksAndLowestValleysApart) {
    // Distances 1..10. Local maxima at m = 2 (3), 4 (5), 6 (2.5), 8 (4); minima at m = 3 (1),
    // 5 (2), 7 (-1), 9 (-3).
    const std::vector<double> wave = {0, 3, 1, 5, 2, 2.5, -1, 4, -3, 0};
    const WaveformExtrema two = waveform_extrema(wave, 2, 1);
    EXPECT_EQ(two.peaks, (std::vector<std::int64_t>{4, 8}));
    EXPECT_EQ(two.valleys, (std::vector<std::int64_t>{7, 9}));
    // At least 3 apart: valley 7 is 2 from 9, so the next lowest (3) comes in.
    const WaveformExtrema apart = waveform_extrema(wave, 2, 3);
    EXPECT_EQ(apart.peaks, (std::vector<std::int64_t>{4, 8}));
    EXPECT_EQ(apart.valleys, (std::vector<std::int64_t>{3, 9}));
}

// Round 1 takes b_min. Round 2: base 300's peaks (30) and valleys (10, 50) sit exactly on b_min's
// valleys (30) and peaks (10, 50): distance 0. Round 3: base 200 scores |31 - 30| + |12 - 10| +
// |48 - 50| = 5, base 250 the same (the tie goes to the smaller base), base 400
// |100 - 50| + |200 - 50| = 200.
TEST(HarpeBases, TheSelectionTakesTheMostComplementaryBaseEachRound) {
    const std::vector<Candidate> candidates = {
        {100, {{10, 50}, {30}}}, {200, {{31}, {12, 48}}}, {250, {{31}, {12, 48}}},
        {300, {{30}, {10, 50}}}, {400, {{100}, {200}}},
    };
    const std::vector<Choice> chosen = complementary_selection(candidates, 3);
    ASSERT_EQ(chosen.size(), 3u);
    EXPECT_EQ(chosen[0].candidate, 0u);
    EXPECT_EQ(chosen[1].candidate, 3u);
    EXPECT_DOUBLE_EQ(chosen[1].distance, 0.0);
    EXPECT_EQ(chosen[2].candidate, 1u);
    EXPECT_DOUBLE_EQ(chosen[2].distance, 5.0);
    // Asking for more than there are takes every candidate once.
    EXPECT_EQ(complementary_selection(candidates, 9).size(), 5u);
}

TEST(HarpeBases, TheSearchStartsAtBMinAndReturnsOneBasePerHeadAscending) {
    BaseSearch search;
    search.heads = 4;
    search.b_min = 1e4;
    search.b_max = 5e4;
    search.stride = 2e3;
    search.head_dim = 16;
    search.window = 2048;
    const SearchResult result = search_bases(search);
    ASSERT_EQ(result.bases.size(), 4u);
    EXPECT_EQ(result.candidates.size(), 21u);
    EXPECT_DOUBLE_EQ(result.bases[0], 1e4);
    EXPECT_EQ(result.choices[0].candidate, 0u);
    for (std::size_t h = 1; h < 4; ++h) EXPECT_LT(result.bases[h - 1], result.bases[h]);
    // The same as the selection over the candidates' own extrema.
    const std::vector<Choice> again = complementary_selection(result.candidates, 4);
    for (std::size_t r = 0; r < 4; ++r) EXPECT_EQ(again[r].candidate, result.choices[r].candidate);

    search.heads = 30;  // 20 candidates above b_min
    try {
        search_bases(search);
        FAIL() << "30 heads from 21 candidates";
    } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what())
                      .find("stride: (b_max - b_min) / stride gives 20 "
                            "candidates besides b_min, fewer than the 29"),
                  std::string::npos)
            << error.what();
    }
}

}  // namespace
}  // namespace moelab::plugins::harpe

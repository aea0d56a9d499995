// The sampler's distributions against hand-worked examples, and its draws against them.

#include <gtest/gtest.h>

#include <cmath>

#include "core/inference/sampler.h"

namespace moelab::tests {
namespace {

// p = (0.5, 0.3, 0.15, 0.05) as logits, for one row.
at::Tensor logits() { return at::log(at::tensor({0.5, 0.3, 0.15, 0.05}, at::kFloat)).view({1, 4}); }

void expect_near(const at::Tensor& got, std::vector<double> expected) {
    ASSERT_EQ(got.size(-1), static_cast<std::int64_t>(expected.size()));
    for (std::size_t i = 0; i < expected.size(); ++i) {
        EXPECT_NEAR(got[0][static_cast<std::int64_t>(i)].item<double>(), expected[i], 1e-6) << i;
    }
}

TEST(Sampler, GreedyIsTheArgmax) {
    core::Sampler sampler({0.0, 0, 1.0, 0});
    expect_near(sampler.distribution(logits()), {1, 0, 0, 0});
    EXPECT_EQ(sampler.next(logits())[0].item<std::int64_t>(), 0);
}

TEST(Sampler, TemperatureTopKAndTopPAsWorkedOut) {
    // Temperature 2: probabilities proportional to sqrt(p).
    const double s = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.15) + std::sqrt(0.05);
    expect_near(core::Sampler({2.0, 0, 1.0, 0}).distribution(logits()),
                {std::sqrt(0.5) / s, std::sqrt(0.3) / s, std::sqrt(0.15) / s, std::sqrt(0.05) / s});
    // Top-3: the last token goes, the rest renormalise over 0.95.
    expect_near(core::Sampler({1.0, 3, 1.0, 0}).distribution(logits()),
                {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
    // Top-p 0.7: 0.5 < 0.7 so the second token is needed; 0.8 reaches it: two tokens.
    expect_near(core::Sampler({1.0, 0, 0.7, 0}).distribution(logits()), {0.625, 0.375, 0, 0});
    // Top-p 0.5 exactly: the first token alone reaches it.
    expect_near(core::Sampler({1.0, 0, 0.5, 0}).distribution(logits()), {1, 0, 0, 0});
    // Both: top-2 then top-p 0.9 of (0.625, 0.375) keeps both.
    expect_near(core::Sampler({1.0, 2, 0.9, 0}).distribution(logits()), {0.625, 0.375, 0, 0});
}

TEST(Sampler, DrawsFollowTheDistributionAndRepeatWithTheSeed) {
    core::Sampler a({1.0, 0, 1.0, 42});
    core::Sampler b({1.0, 0, 1.0, 42});
    constexpr int kDraws = 20000;
    std::vector<int> counts(4, 0);
    const at::Tensor rows = logits().expand({kDraws, 4});
    const at::Tensor drawn = a.next(rows);
    EXPECT_TRUE(at::equal(drawn, b.next(rows)));
    for (int i = 0; i < kDraws; ++i)
        ++counts[static_cast<std::size_t>(drawn[i].item<std::int64_t>())];
    const std::vector<double> p{0.5, 0.3, 0.15, 0.05};
    for (std::size_t i = 0; i < 4; ++i) {
        // Five standard deviations of a binomial proportion.
        const double sd = std::sqrt(p[i] * (1 - p[i]) / kDraws);
        EXPECT_NEAR(counts[i] / double(kDraws), p[i], 5 * sd) << i;
    }
}

TEST(Sampler, RejectsImpossibleSettings) {
    EXPECT_THROW(core::Sampler({-1.0, 0, 1.0, 0}), std::invalid_argument);
    EXPECT_THROW(core::Sampler({1.0, -2, 1.0, 0}), std::invalid_argument);
    EXPECT_THROW(core::Sampler({1.0, 0, 0.0, 0}), std::invalid_argument);
    EXPECT_THROW(core::Sampler({1.0, 0, 1.5, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace moelab::tests

#include <gtest/gtest.h>

#include "core/config/suggest.h"

namespace moelab::core {
namespace {

TEST(EditDistance, CountsInsertionsDeletionsSubstitutionsAndTranspositions) {
    EXPECT_EQ(edit_distance("steps", "steps"), 0u);
    EXPECT_EQ(edit_distance("stpes", "steps"), 1u);  // transposition
    EXPECT_EQ(edit_distance("step", "steps"), 1u);
    EXPECT_EQ(edit_distance("stepsx", "steps"), 1u);
    EXPECT_EQ(edit_distance("stops", "steps"), 1u);
    EXPECT_EQ(edit_distance("", "abc"), 3u);
    EXPECT_EQ(edit_distance("Steps", "steps"), 0u);  // case-insensitive
}

TEST(ClosestMatch, SuggestsOnlyPlausibleTypos) {
    const std::vector<std::string> keys = {"steps", "batch_size", "lr_peak", "lr_min"};
    EXPECT_EQ(closest_match("stpes", keys), "steps");
    EXPECT_EQ(closest_match("batchsize", keys), "batch_size");
    EXPECT_EQ(closest_match("lr_mn", keys), "lr_min");
    EXPECT_FALSE(closest_match("temperature", keys).has_value());
    EXPECT_FALSE(closest_match("xy", {"k"}).has_value());
    EXPECT_EQ(did_you_mean("kk", {"k", "jitter"}), " (did you mean 'k'?)");
    EXPECT_EQ(did_you_mean("zzzz", {"k", "jitter"}), "");
}

}  // namespace
}  // namespace moelab::core

// Pre-tokenization: GPT-2's regex on hand-picked strings (the expected pieces are what the regex
// gives), the whitespace variant, digit splitting, and lossless cutting of arbitrary bytes.

#include <gtest/gtest.h>

#include <random>

#include "pretokenizer.h"

namespace moelab::plugins::bpe_family {
namespace {

std::vector<std::string> pieces(std::string_view text, PretokenizerConfig config = {}) {
    std::vector<std::string> out;
    for_each_piece(text, config, [&](std::string_view piece) { out.emplace_back(piece); });
    return out;
}

using Pieces = std::vector<std::string>;

TEST(Pretokenizer, FollowsGpt2Regex) {
    EXPECT_EQ(pieces("Hello world"), (Pieces{"Hello", " world"}));
    EXPECT_EQ(pieces("I'm don't they're"), (Pieces{"I", "'m", " don", "'t", " they", "'re"}));
    EXPECT_EQ(pieces("price: $100.50!"), (Pieces{"price", ":", " $", "100", ".", "50", "!"}));
    // \s+(?!\S): a whitespace run gives its last space to the next word.
    EXPECT_EQ(pieces("a   b"), (Pieces{"a", "  ", " b"}));
    EXPECT_EQ(pieces("a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
    EXPECT_EQ(pieces("a \n b"), (Pieces{"a", " \n", " b"}));
    EXPECT_EQ(pieces("end   "), (Pieces{"end", "   "}));
    EXPECT_EQ(pieces("x\ty"), (Pieces{"x", "\t", "y"}));
    EXPECT_EQ(pieces("abc123def"), (Pieces{"abc", "123", "def"}));
    EXPECT_EQ(pieces(" 'hello'"), (Pieces{" '", "hello", "'"}));
    // Non-ASCII: letters stay with letters; the euro sign and the no-break space are not letters.
    EXPECT_EQ(pieces("caf\xc3\xa9 na\xc3\xafve"), (Pieces{"caf\xc3\xa9", " na\xc3\xafve"}));
    EXPECT_EQ(pieces("\xe2\x82\xac" "5"), (Pieces{"\xe2\x82\xac", "5"}));
    EXPECT_EQ(pieces("a\xc2\xa0" "b"), (Pieces{"a", "\xc2\xa0", "b"}));
}

TEST(Pretokenizer, WhitespaceKindKeepsOnlyWhitespaceBoundaries) {
    const PretokenizerConfig whitespace{PretokenizerKind::kWhitespace, false};
    EXPECT_EQ(pieces("foo-bar baz's 12x", whitespace), (Pieces{"foo-bar", " baz's", " 12x"}));
    EXPECT_EQ(pieces("a  b\n", whitespace), (Pieces{"a", " ", " b", "\n"}));
}

TEST(Pretokenizer, SplitDigitsIsolatesEveryDigit) {
    const PretokenizerConfig digits{PretokenizerKind::kGpt2, true};
    EXPECT_EQ(pieces("in 1961, x2", digits),
              (Pieces{"in", " ", "1", "9", "6", "1", ",", " x", "2"}));
    const PretokenizerConfig whitespace_digits{PretokenizerKind::kWhitespace, true};
    EXPECT_EQ(pieces("ab12 c", whitespace_digits), (Pieces{"ab", "1", "2", " c"}));
}

TEST(Pretokenizer, PiecesConcatenateToAnyByteString) {
    std::mt19937 rng(3);
    for (int trial = 0; trial < 200; ++trial) {
        std::string text(static_cast<std::size_t>(rng() % 64), '\0');
        for (char& c : text) c = static_cast<char>(rng() % 256);
        for (const PretokenizerConfig& config :
             {PretokenizerConfig{PretokenizerKind::kGpt2, false},
              PretokenizerConfig{PretokenizerKind::kGpt2, true},
              PretokenizerConfig{PretokenizerKind::kWhitespace, false}}) {
            std::string joined;
            for (const std::string& p : pieces(text, config)) {
                ASSERT_FALSE(p.empty());
                joined += p;
            }
            ASSERT_EQ(joined, text);
        }
    }
}

}  // namespace
}  // namespace moelab::plugins::bpe_family

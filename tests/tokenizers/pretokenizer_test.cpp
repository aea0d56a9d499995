// Pre-tokenization: GPT-2's regex on hand-picked strings (the expected pieces are what the regex
// gives), the whitespace variant, digit splitting, and lossless cutting of arbitrary bytes.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <unistd.h>

#include "pretoken_counts.h"
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

// Counting streams the file in blocks and splits each over threads at line starts; neither may
// change a count. The text has line starts that are no piece boundary: "\n" followed by
// no-break spaces (U+00A0) belongs to one whitespace run with them, and a long line without a line
// start, which blocks smaller than it must cut elsewhere without splitting a piece.
TEST(PretokenCounts, DoNotDependOnThreadsOrBlockSize) {
    std::mt19937 rng(5);
    const std::vector<std::string> atoms{"word", " the", "\n", "\n\n", "  ", "\xc2\xa0",
                                         "\n\xc2\xa0\xc2\xa0x", "12", "caf\xc3\xa9", "!",
                                         "\n\xe2\x80\x83y", "\t", "'re", "'", " 's",
                                         "x", "5"};
    std::string text;
    while (text.size() < 20000) text += atoms[rng() % atoms.size()];
    // A 5000-byte line: blocks smaller than it hold no line start to cut at.
    for (int i = 0; i < 500; ++i) text += atoms[rng() % 2] + atoms[5 + rng() % 3 * 3] + "'";
    const auto path = std::filesystem::temp_directory_path() /
                      ("moelab-pretoken-counts-" + std::to_string(::getpid()) + ".txt");
    std::ofstream(path, std::ios::binary) << text;

    for (const PretokenizerConfig& config : {PretokenizerConfig{PretokenizerKind::kGpt2, false},
                                             PretokenizerConfig{PretokenizerKind::kWhitespace, true}}) {
        std::map<std::string, std::int64_t> expected;
        for_each_piece(text, config, [&](std::string_view piece) { ++expected[std::string(piece)]; });
        for (const auto& [threads, block] : std::vector<std::pair<unsigned, std::size_t>>{
                 {1, kDefaultBlockBytes}, {4, kDefaultBlockBytes}, {1, 97}, {3, 1000}, {2, 7}}) {
            const PretokenCounts counts = count_pretokens({path.string()}, config, threads, block);
            std::map<std::string, std::int64_t> got;
            for (std::size_t i = 0; i < counts.pieces.size(); ++i) got[counts.pieces[i]] += counts.counts[i];
            // Only the differing pieces, readable.
            std::string differences;
            auto escaped = [](const std::string& piece) {
                std::string out;
                for (unsigned char c : piece) {
                    out += c >= 0x20 && c < 0x7f ? std::string(1, static_cast<char>(c))
                                                 : "\\x" + std::to_string(c);
                }
                return out;
            };
            for (const auto& [piece, count] : expected) {
                auto it = got.find(piece);
                const std::int64_t have = it == got.end() ? 0 : it->second;
                if (have != count) differences += escaped(piece) + ": " + std::to_string(have) + " not " + std::to_string(count) + "\n";
            }
            for (const auto& [piece, count] : got) {
                if (!expected.count(piece)) differences += escaped(piece) + ": " + std::to_string(count) + " not 0\n";
            }
            EXPECT_EQ(differences, "") << config.kind_name() << ", " << threads << " threads, blocks of "
                                       << block;
            EXPECT_EQ(counts.bytes, static_cast<std::int64_t>(text.size()));
        }
    }
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace moelab::plugins::bpe_family

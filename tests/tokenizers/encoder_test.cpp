// Encoding policies on constructed vocabularies (merge rank, LBPE's longest first with both
// tie-breaks, Scaffold-BPE's demolition), the tokenizer file format, and the Hugging Face export
// checked by an independent byte-level decoder and merge-applier written here.

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <tuple>

#include "encoder.h"
#include "hf_byte_table.h"
#include "moelab/sdk/error.h"
#include "tokenizer_file.h"
#include "trainer.h"

namespace moelab::plugins::bpe_family {
namespace {

using Ids = std::vector<std::int32_t>;

// Bytes, end of document, then the given merges of byte strings, in rank order.
Vocabulary vocabulary_of(std::initializer_list<std::pair<const char*, const char*>> merges) {
    Vocabulary v = Vocabulary::bytes_only();
    std::map<std::string, std::int32_t> id_of;
    for (std::int32_t b = 0; b < 256; ++b) id_of[v.tokens[b]] = b;
    for (const auto& [left, right] : merges) {
        const std::string bytes = std::string(left) + right;
        std::int32_t result;
        if (auto it = id_of.find(bytes); it != id_of.end()) {
            result = it->second;
        } else {
            result = v.expanded_size();
            v.tokens.push_back(bytes);
            v.scaffold.push_back(0);
            id_of[bytes] = result;
        }
        v.merges.push_back({id_of.at(left), id_of.at(right), result});
    }
    v.validate();
    return v;
}

Ids encode(const Encoder& encoder, std::string_view text) {
    Ids ids;
    encoder.encode(text, ids);
    return ids;
}

const EncodingOptions kMergeRank{};
const EncodingOptions kLongestByRank{EncodingPolicy::kLongestFirst, LengthUnit::kBytes,
                                     TieBreak::kRank};
const EncodingOptions kLongestByPosition{EncodingPolicy::kLongestFirst, LengthUnit::kBytes,
                                         TieBreak::kPosition};

TEST(Lbpe, AppliesTheLongestAvailableMergeFirst) {
    // 257 "cd", 258 "ab", 259 "bcd". BPE: cd, then ab (rank 1 before bcd's 2) -> [ab, cd].
    // LBPE: cd (all candidates have length 2; rank decides), then bcd (3 bytes) beats ab.
    const Vocabulary v = vocabulary_of({{"c", "d"}, {"a", "b"}, {"b", "cd"}});
    EXPECT_EQ(encode(Encoder(v, {}, kMergeRank), "abcd"), (Ids{258, 257}));
    EXPECT_EQ(encode(Encoder(v, {}, kLongestByRank), "abcd"), (Ids{'a', 259}));
}

TEST(Lbpe, EqualLengthsFallBackToRankOrPosition) {
    // 257 "ab" (rank 0), 258 "xa" (rank 1): both candidates in "xab" have length 2.
    const Vocabulary v = vocabulary_of({{"a", "b"}, {"x", "a"}});
    EXPECT_EQ(encode(Encoder(v, {}, kLongestByRank), "xab"), (Ids{'x', 257}));
    EXPECT_EQ(encode(Encoder(v, {}, kLongestByPosition), "xab"), (Ids{258, 'b'}));
    // Every occurrence of the chosen pair is applied, left to right.
    EXPECT_EQ(encode(Encoder(v, {}, kLongestByRank), "abxab"), (Ids{257, 'x', 257}));
}

TEST(Lbpe, UsesAnyAdjacentPairThatSpellsAVocabularyToken) {
    // "abc" was learned as (ab, c); LBPE may also build it from (a, bc) once bc exists.
    const Vocabulary v = vocabulary_of({{"b", "c"}, {"a", "b"}, {"ab", "c"}});
    // 257 "bc", 258 "ab", 259 "abc". BPE: bc first -> [a, bc]; (a, bc) is no merge -> stuck.
    EXPECT_EQ(encode(Encoder(v, {}, kMergeRank), "abc"), (Ids{'a', 257}));
    EXPECT_EQ(encode(Encoder(v, {}, kLongestByRank), "abc"), (Ids{259}));
    const EncodingOptions chars{EncodingPolicy::kLongestFirst, LengthUnit::kChars, TieBreak::kRank};
    EXPECT_EQ(encode(Encoder(v, {}, chars), "abc"), (Ids{259}));
}

TEST(ScaffoldEncoding, DemolitionGivesTheShortestNormalDecomposition) {
    // 257 "ab", 258 "bc", 259 "abc" (made by (ab, c) and by (a, bc)); ab and abc are scaffold.
    Vocabulary v = vocabulary_of({{"a", "b"}, {"b", "c"}, {"ab", "c"}, {"a", "bc"}});
    v.scaffold[257] = v.scaffold[259] = 1;
    const auto demolition = demolition_sequences(v);
    EXPECT_EQ(demolition[259], (Ids{'a', 258})) << "2 pieces beat [a, b, c]";
    EXPECT_EQ(demolition[257], (Ids{'a', 'b'}));
    EXPECT_EQ(demolition[258], (Ids{258}));
    // Model ids skip scaffold tokens: bc (258) is model id 257.
    const Encoder encoder(v, {}, kMergeRank);
    EXPECT_EQ(encoder.model_vocab_size(), 258);
    EXPECT_EQ(encoder.merge_pretoken("abc"), (Ids{259}));
    EXPECT_EQ(encode(encoder, "abc"), (Ids{'a', 257}));
    EXPECT_EQ(encode(encoder, "abab"), (Ids{'a', 'b', 'a', 'b'}));
    EXPECT_EQ(encoder.decode(encode(encoder, "abcab").data(), 4), "abcab");
}

// The merge loop as methods.md §10.2 states it, written out slowly: each round takes the
// applicable pair of adjacent tokens with the best priority (the leftmost among equals) and
// replaces its occurrences left to right, until none applies.
Ids reference_merge(const Vocabulary& v, const EncodingOptions& options, std::string_view piece) {
    std::map<std::string, std::int32_t> normal;
    std::map<std::int32_t, std::size_t> first_rank;
    for (std::int32_t id = 0; id < v.expanded_size(); ++id) {
        if (id != kEndOfDocument && !v.is_scaffold(id)) normal[v.tokens[id]] = id;
    }
    std::map<std::pair<std::int32_t, std::int32_t>, std::size_t> rank_of_pair;
    for (std::size_t r = 0; r < v.merges.size(); ++r) {
        first_rank.emplace(v.merges[r].result, r);
        rank_of_pair.emplace(std::make_pair(v.merges[r].left, v.merges[r].right), r);
    }
    // (priority, result) of a pair, or nullopt.
    auto rule = [&](std::int32_t a, std::int32_t b)
        -> std::optional<std::pair<std::pair<std::int64_t, std::int64_t>, std::int32_t>> {
        if (options.policy == EncodingPolicy::kMergeRank) {
            auto it = rank_of_pair.find({a, b});
            if (it == rank_of_pair.end()) return std::nullopt;
            return std::make_pair(
                std::make_pair(static_cast<std::int64_t>(it->second), std::int64_t{0}),
                v.merges[it->second].result);
        }
        if (v.is_scaffold(a) || v.is_scaffold(b)) return std::nullopt;
        auto it = normal.find(v.tokens[a] + v.tokens[b]);
        if (it == normal.end() || it->second < kFirstLearnedId) return std::nullopt;
        const auto length = static_cast<std::int64_t>(it->first.size());  // bytes
        const std::int64_t tie = options.tie_break == TieBreak::kRank
                                     ? static_cast<std::int64_t>(first_rank.at(it->second))
                                     : 0;
        return std::make_pair(std::make_pair(-length, tie), it->second);
    };
    Ids s(piece.begin(), piece.end());
    for (auto& x : s) x = static_cast<unsigned char>(x);
    while (true) {
        std::optional<std::pair<std::pair<std::int64_t, std::int64_t>, std::int32_t>> best;
        std::size_t at = 0;
        for (std::size_t i = 0; i + 1 < s.size(); ++i) {
            const auto r = rule(s[i], s[i + 1]);
            if (r && (!best || r->first < best->first)) {
                best = r;
                at = i;
            }
        }
        if (!best) return s;
        const std::int32_t left = s[at], right = s[at + 1];
        Ids out(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(at));
        for (std::size_t i = at; i < s.size();) {
            if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
                out.push_back(best->second);
                i += 2;
            } else {
                out.push_back(s[i++]);
            }
        }
        s = std::move(out);
    }
}

// Pieces long enough for the encoder's heap-based loop (and short ones, for the scan) give the
// reference's tokens under every policy, with and without scaffold tokens.
TEST(MergeLoop, LongPiecesEqualTheReference) {
    std::mt19937 rng(17);
    // Words of a small lexicon with Zipf-like counts: long tokens that swallow their parts, so
    // Scaffold-BPE marks some parts scaffold.
    PretokenCounts corpus;
    for (int w = 0; w < 300; ++w) {
        std::string word(4 + rng() % 30, ' ');
        for (char& c : word) c = "aabbc "[rng() % 6];
        corpus.pieces.push_back(word);
        corpus.counts.push_back(1 + static_cast<std::int64_t>(2000.0 / (w + 1)));
    }
    const Vocabulary bpe = train_bpe(corpus, {420, 2, {}});
    const Vocabulary scaffold = train_scaffold_bpe(corpus, {420, 2, {}});
    ASSERT_GT(scaffold.scaffold_count(), 0);
    for (const auto& [name, vocabulary, options] :
         std::vector<std::tuple<const char*, const Vocabulary*, EncodingOptions>>{
             {"bpe", &bpe, kMergeRank},
             {"lbpe rank", &bpe, kLongestByRank},
             {"lbpe position", &bpe, kLongestByPosition},
             {"scaffold", &scaffold, kMergeRank}}) {
        const Encoder encoder(*vocabulary, {}, options);
        for (int trial = 0; trial < 30; ++trial) {
            std::string piece(trial < 5 ? 3 + rng() % 60 : 65 + rng() % 1500, ' ');
            for (char& c : piece) c = "aabbc "[rng() % 6];
            ASSERT_EQ(encoder.merge_pretoken(piece), reference_merge(*vocabulary, options, piece))
                << name << ", piece of " << piece.size() << " bytes";
        }
    }
}

TEST(TokenizerFile, RoundTripsAndNamesWhatIsWrong) {
    TokenizerFile file;
    file.component = "scaffold-bpe";
    file.algorithm = "scaffold-bpe";
    file.pretokenizer = {PretokenizerKind::kWhitespace, true};
    file.vocabulary = vocabulary_of({{"a", "b"}, {"b", "c"}, {"ab", "c"}, {"a", "bc"}});
    file.vocabulary.scaffold[257] = file.vocabulary.scaffold[259] = 1;
    const std::string text = write_tokenizer_file(file);
    const TokenizerFile read = read_tokenizer_file(text);
    EXPECT_EQ(read.component, "scaffold-bpe");
    EXPECT_EQ(read.algorithm, "scaffold-bpe");
    EXPECT_EQ(read.pretokenizer, file.pretokenizer);
    EXPECT_EQ(read.vocabulary.tokens, file.vocabulary.tokens);
    EXPECT_EQ(read.vocabulary.scaffold, file.vocabulary.scaffold);
    ASSERT_EQ(read.vocabulary.merges.size(), 4u);
    EXPECT_EQ(read.vocabulary.merges[3].result, 259);
    EXPECT_EQ(write_tokenizer_file(read), text);
    EXPECT_NE(text.find("\"demolition\": {\"257\":[97,98],\"259\":[97,258]}"), std::string::npos)
        << text;

    auto error_of = [](const std::string& bad) {
        try {
            read_tokenizer_file(bad);
        } catch (const sdk::Error& error) {
            return std::string(error.what());
        }
        return std::string("no error");
    };
    // The position where the parser noticed: after reading "no" of the invalid literal.
    EXPECT_NE(error_of("{not json").find("not valid JSON (syntax error at line 1, column 3)"),
              std::string::npos)
        << error_of("{not json");
    std::string no_merges = text;
    no_merges.replace(no_merges.find("\"merges\""), 8, "\"mergez\"");
    EXPECT_NE(error_of(no_merges).find("missing key 'merges'"), std::string::npos);
    std::string bad_merge = text;
    bad_merge.replace(bad_merge.find("[[97,98]"), 8, "[[97,99]");
    EXPECT_NE(error_of(bad_merge).find("merge 0"), std::string::npos) << error_of(bad_merge);
    std::string bad_demolition = text;
    bad_demolition.replace(bad_demolition.rfind("[97,258]"), 8, "[97,98,99]");
    EXPECT_NE(error_of(bad_demolition).find("demolition sequence of scaffold token 259"),
              std::string::npos);

    auto replaced = [&](const std::string& from, const std::string& to) {
        std::string changed = text;
        const auto at = changed.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        if (at != std::string::npos) changed.replace(at, from.size(), to);
        return error_of(changed);
    };
    // Ids that do not fit: never truncated to a valid one.
    EXPECT_NE(replaced("[[97,98]", "[[4294967393,98]")
                  .find("merges must hold token ids in [0, 260), got 4294967393"),
              std::string::npos)
        << replaced("[[97,98]", "[[4294967393,98]");
    EXPECT_NE(replaced("[[97,98]", "[[-1,98]").find("got -1"), std::string::npos);
    EXPECT_NE(replaced("[[97,98]", "[[97.0,98]").find("got 97.0"), std::string::npos);
    EXPECT_NE(
        replaced("\"scaffold\": [257", "\"scaffold\": [9999999999").find("scaffold must hold"),
        std::string::npos);
    // Wrong types name the key.
    EXPECT_NE(replaced("\"tokens\": [", "\"tokens\": \"x\", \"unused\": [")
                  .find("'tokens' must be an array"),
              std::string::npos);
    EXPECT_NE(replaced("\"demolition\": {", "\"demolition\": [], \"unused\": {")
                  .find("'demolition' must be an object"),
              std::string::npos);
    // A deeply nested value is described by its type, not printed.
    const std::string nested = std::string(5000, '[') + std::string(5000, ']');
    EXPECT_NE(replaced("\"version\": 1", "\"version\": " + nested).find("version a JSON array"),
              std::string::npos);
    EXPECT_NE(replaced("\"version\": 1", "\"version\": 2")
                  .find("version 2 (this moelab reads version 1)"),
              std::string::npos);
    // Combinations no trainer writes.
    EXPECT_NE(replaced("\"algorithm\": \"scaffold-bpe\"", "\"algorithm\": \"bpe\"")
                  .find("with scaffold tokens"),
              std::string::npos);
    EXPECT_NE(
        replaced("{\"policy\":\"merge-rank\"}",
                 "{\"length_unit\":\"bytes\",\"policy\":\"longest-first\",\"tie_break\":\"rank\"}")
            .find("encoded by merge rank"),
        std::string::npos);
}

// Splits a UTF-8 string into its characters.
std::vector<std::string> characters(const std::string& s) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t n = 1;
        while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}

TEST(HuggingFaceExport, DecodesMoelabIdsAndReproducesThemWithItsMerges) {
    const std::string corpus_dir = std::string(MOELAB_SOURCE_DIR) + "/data/brown/";
    std::ifstream in(corpus_dir + "validation.txt", std::ios::binary);
    ASSERT_TRUE(in) << "run `bash tools/setup.sh` first";
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string text = buffer.str().substr(0, 120000);

    TokenizerFile file;
    file.component = "bpe";
    file.algorithm = "bpe";
    file.vocabulary = train_bpe(count_pretokens({corpus_dir + "train.txt"}, {}), {1500, 2, {}});
    const auto hf = nlohmann::json::parse(export_hugging_face(file));
    ASSERT_EQ(hf["model"]["type"], "BPE");
    EXPECT_EQ(hf["pre_tokenizer"]["type"], "ByteLevel");
    EXPECT_EQ(hf["added_tokens"][0]["id"], 256);
    EXPECT_EQ(hf["added_tokens"][0]["content"], "<|endoftext|>");

    std::map<std::int32_t, std::string> piece_of;
    std::map<std::string, std::int32_t> vocab;
    for (const auto& [piece, id] : hf["model"]["vocab"].items()) {
        piece_of[id.get<std::int32_t>()] = piece;
        vocab[piece] = id.get<std::int32_t>();
    }
    ASSERT_EQ(vocab.size(), 1499u) << "every token but the added end-of-document one";
    std::map<std::pair<std::string, std::string>, std::size_t> rank;
    for (const auto& merge : hf["model"]["merges"]) {
        const std::string m = merge.get<std::string>();
        const auto space = m.find(' ');
        rank.emplace(std::make_pair(m.substr(0, space), m.substr(space + 1)), rank.size());
    }

    const Encoder encoder(file.vocabulary, file.pretokenizer, file.encoding);
    const Ids ids = encode(encoder, text);
    // 1. Decoding moelab's ids with the exported vocabulary gives the text back.
    const auto byte_of = tests::hf_byte_decoder();
    std::string decoded;
    for (std::int32_t id : ids) {
        ASSERT_TRUE(piece_of.count(id)) << id;
        for (const std::string& c : characters(piece_of[id]))
            decoded += static_cast<char>(byte_of.at(c));
    }
    EXPECT_TRUE(decoded == text);
    // 2. Applying the exported merges (lowest rank first, every occurrence) to each pre-token
    // gives moelab's ids.
    std::map<unsigned char, std::string> char_of;
    for (const auto& [c, b] : byte_of) char_of[b] = c;
    Ids reference;
    for_each_piece(text, file.pretokenizer, [&](std::string_view piece) {
        std::vector<std::string> symbols;
        for (unsigned char b : piece) symbols.push_back(char_of[b]);
        while (symbols.size() > 1) {
            std::size_t best = rank.size(), at = 0;
            for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
                auto it = rank.find({symbols[i], symbols[i + 1]});
                if (it != rank.end() && it->second < best) {
                    best = it->second;
                    at = i;
                }
            }
            if (best == rank.size()) break;
            const std::string left = symbols[at], right = symbols[at + 1];
            std::vector<std::string> merged;
            for (std::size_t i = 0; i < symbols.size();) {
                if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
                    merged.push_back(left + right);
                    i += 2;
                } else {
                    merged.push_back(symbols[i++]);
                }
            }
            symbols = std::move(merged);
        }
        for (const std::string& s : symbols) reference.push_back(vocab.at(s));
    });
    EXPECT_EQ(reference, ids);
}

// The exported pre-tokenizer for each moelab configuration: GPT-2 is ByteLevel's own regex;
// whitespace splits first and turns ByteLevel's regex off; digit splitting goes in front.
TEST(HuggingFaceExport, PreTokenizerFollowsTheConfiguration) {
    TokenizerFile file;
    file.component = "bpe";
    file.algorithm = "bpe";
    file.vocabulary = vocabulary_of({{"a", "b"}});
    auto exported = [&](PretokenizerKind kind, bool digits) {
        file.pretokenizer = {kind, digits};
        return nlohmann::json::parse(export_hugging_face(file))["pre_tokenizer"];
    };
    auto expect_byte_level = [](const nlohmann::json& j, bool regex) {
        EXPECT_EQ(j["type"], "ByteLevel");
        EXPECT_EQ(j["use_regex"], regex);
        EXPECT_EQ(j["add_prefix_space"], false);
    };
    auto expect_whitespace = [&](const nlohmann::json& j) {
        ASSERT_EQ(j["type"], "Sequence");
        ASSERT_EQ(j["pretokenizers"].size(), 2u);
        EXPECT_EQ(j["pretokenizers"][0]["type"], "Split");
        EXPECT_EQ(j["pretokenizers"][0]["pattern"]["Regex"], " ?\\S+|\\s+(?!\\S)|\\s+");
        EXPECT_EQ(j["pretokenizers"][0]["behavior"], "Isolated");
        expect_byte_level(j["pretokenizers"][1], false);
    };
    auto expect_digits_then = [](const nlohmann::json& j) {
        EXPECT_EQ(j["type"], "Sequence");
        EXPECT_EQ(j["pretokenizers"].size(), 2u);
        EXPECT_EQ(j["pretokenizers"][0]["type"], "Digits");
        EXPECT_EQ(j["pretokenizers"][0]["individual_digits"], true);
        return j["pretokenizers"][1];
    };
    expect_byte_level(exported(PretokenizerKind::kGpt2, false), true);
    expect_whitespace(exported(PretokenizerKind::kWhitespace, false));
    expect_byte_level(expect_digits_then(exported(PretokenizerKind::kGpt2, true)), true);
    expect_whitespace(expect_digits_then(exported(PretokenizerKind::kWhitespace, true)));
    const auto root = nlohmann::json::parse(export_hugging_face(file));
    EXPECT_EQ(root["decoder"]["type"], "ByteLevel");
}

TEST(HuggingFaceExport, RefusesWhatItCannotExpress) {
    TokenizerFile file;
    file.component = "scaffold-bpe";
    file.algorithm = "scaffold-bpe";
    file.vocabulary = vocabulary_of({{"a", "b"}, {"ab", "c"}});
    file.vocabulary.scaffold[257] = 1;
    EXPECT_THROW(export_hugging_face(file), sdk::Error);
    file.vocabulary.scaffold[257] = 0;
    file.encoding = kLongestByRank;
    EXPECT_THROW(export_hugging_face(file), sdk::Error);
}

}  // namespace
}  // namespace moelab::plugins::bpe_family

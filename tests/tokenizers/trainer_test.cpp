// The BPE and Scaffold-BPE trainers against slow reference implementations written here (full
// recount of every pair and every token frequency at every step), plus Scaffold-BPE's defining
// properties on constructed corpora.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "encoder.h"
#include "trainer.h"

namespace moelab::plugins::bpe_family {
namespace {

using Symbols = std::vector<std::int32_t>;

// The textbook algorithm over whole-corpus recounts. Tokens are byte strings (a merge that spells
// an existing token reuses its id); ties go to the smallest pair of ids. With `scaffold`, it is
// Algorithm 1 of Scaffold-BPE as moelab reads it (see trainer.h): after each merge, a part whose
// frequency fell below the queue head (the best pair or scaffold token, at current frequencies)
// becomes scaffold; a scaffold token at the head (ties before pairs) is re-activated.
struct ReferenceTrainer {
    std::map<Symbols, std::int64_t> words;
    std::vector<std::string> tokens;
    std::map<std::string, std::int32_t> id_of;
    std::vector<int> scaffold;
    std::vector<Merge> merges;

    explicit ReferenceTrainer(const PretokenCounts& corpus) {
        for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
        tokens.emplace_back();
        for (std::int32_t id = 0; id < 257; ++id) {
            if (id != 256) id_of[tokens[id]] = id;
        }
        scaffold.assign(257, 0);
        for (std::size_t i = 0; i < corpus.pieces.size(); ++i) {
            Symbols s;
            for (unsigned char c : corpus.pieces[i]) s.push_back(c);
            words[s] += corpus.counts[i];
        }
    }

    std::map<std::pair<std::int32_t, std::int32_t>, std::int64_t> pair_counts() const {
        std::map<std::pair<std::int32_t, std::int32_t>, std::int64_t> counts;
        for (const auto& [w, c] : words) {
            for (std::size_t i = 0; i + 1 < w.size(); ++i) counts[{w[i], w[i + 1]}] += c;
        }
        return counts;
    }
    std::int64_t frequency(std::int32_t id) const {
        std::int64_t f = 0;
        for (const auto& [w, c] : words) f += c * std::count(w.begin(), w.end(), id);
        return f;
    }
    // (count, pair) of the best pair; count 0 when none.
    std::pair<std::int64_t, std::pair<std::int32_t, std::int32_t>> best_pair() const {
        std::pair<std::int64_t, std::pair<std::int32_t, std::int32_t>> best{0, {0, 0}};
        for (const auto& [pair, count] : pair_counts()) {  // ascending pairs: first max wins
            if (count > best.first) best = {count, pair};
        }
        return best;
    }
    // (frequency, id) of the most frequent scaffold token (ties: smaller id); id -1 when none.
    std::pair<std::int64_t, std::int32_t> best_scaffold() const {
        std::pair<std::int64_t, std::int32_t> best{-1, -1};
        for (std::int32_t id = 0; id < static_cast<std::int32_t>(tokens.size()); ++id) {
            if (scaffold[id] && frequency(id) > best.first) best = {frequency(id), id};
        }
        return best;
    }
    std::int32_t merge(std::int32_t a, std::int32_t b) {
        const std::string bytes = tokens[a] + tokens[b];
        std::int32_t result;
        if (auto it = id_of.find(bytes); it != id_of.end()) {
            result = it->second;
        } else {
            result = static_cast<std::int32_t>(tokens.size());
            tokens.push_back(bytes);
            scaffold.push_back(0);
            id_of[bytes] = result;
        }
        merges.push_back({a, b, result});
        std::map<Symbols, std::int64_t> next;
        for (const auto& [w, c] : words) {
            Symbols merged;
            for (std::size_t i = 0; i < w.size();) {
                if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
                    merged.push_back(result);
                    i += 2;
                } else {
                    merged.push_back(w[i++]);
                }
            }
            next[merged] += c;
        }
        words = std::move(next);
        return result;
    }
    std::int64_t normal_count() const {
        return static_cast<std::int64_t>(tokens.size()) -
               std::count(scaffold.begin(), scaffold.end(), 1);
    }

    void train_bpe(std::int64_t vocab_size, std::int64_t min_frequency) {
        while (static_cast<std::int64_t>(tokens.size()) < vocab_size) {
            const auto [count, pair] = best_pair();
            if (count < min_frequency || count == 0) break;
            merge(pair.first, pair.second);
        }
    }

    void train_scaffold(std::int64_t vocab_size, std::int64_t min_frequency) {
        while (normal_count() < vocab_size) {
            const auto [count, pair] = best_pair();
            const auto [token_frequency, token] = best_scaffold();
            if (token >= 0 && token_frequency >= count) {
                if (token_frequency < min_frequency) break;
                scaffold[token] = 0;
                continue;
            }
            if (count == 0 || count < min_frequency) break;
            const std::size_t before = tokens.size();
            const std::int32_t result = merge(pair.first, pair.second);
            if (tokens.size() == before && scaffold[result]) scaffold[result] = 0;
            const std::int64_t head = std::max(best_pair().first, best_scaffold().first);
            for (std::int32_t part : {pair.first, pair.second}) {
                if (part >= 257 && !scaffold[part] && frequency(part) < head) scaffold[part] = 1;
            }
        }
    }
};

// A corpus of words over a small alphabet with Zipf-like counts: many overlapping pairs, ties,
// repeated letters, and tokens that mostly live inside longer ones (scaffold candidates).
PretokenCounts random_corpus(unsigned seed, int words, int lexicon_size = 60,
                             std::string_view alphabet = "abcdab") {
    std::mt19937 rng(seed);
    std::vector<std::string> lexicon;
    for (int i = 0; i < lexicon_size; ++i) {
        std::string word = rng() % 3 ? " " : "";
        const int length = 2 + static_cast<int>(rng() % 8);
        for (int k = 0; k < length; ++k) word += alphabet[rng() % alphabet.size()];
        lexicon.push_back(word);
    }
    std::map<std::string, std::int64_t> counts;
    for (int i = 0; i < words; ++i) {
        const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        counts[lexicon[static_cast<std::size_t>(std::pow(u, 2.5) * lexicon.size())]] += 1;
    }
    PretokenCounts corpus;
    for (const auto& [w, c] : counts) {
        corpus.pieces.push_back(w);
        corpus.counts.push_back(c);
    }
    return corpus;
}

std::vector<std::tuple<std::int32_t, std::int32_t, std::int32_t>> as_tuples(
    const std::vector<Merge>& merges) {
    std::vector<std::tuple<std::int32_t, std::int32_t, std::int32_t>> out;
    for (const Merge& m : merges) out.emplace_back(m.left, m.right, m.result);
    return out;
}

// Small random corpora (seeds 1-3), and one of thousands of distinct words: far more count
// changes than live pairs, so the trainer's heap is rebuilt from the live counts many times.
TEST(BpeTrainer, MergesEqualTheTextbookAlgorithm) {
    struct Case {
        unsigned seed;
        int words, lexicon;
        const char* alphabet;
        std::int64_t vocab;
        std::size_t min_merges;
    };
    for (const Case& c : {Case{1, 400, 60, "abcdab", 400, 20}, Case{2, 400, 60, "abcdab", 400, 20},
                          Case{3, 400, 60, "abcdab", 400, 20},
                          Case{21, 30000, 3000, "abcdefghijkl", 900, 600}}) {
        const PretokenCounts corpus = random_corpus(c.seed, c.words, c.lexicon, c.alphabet);
        ReferenceTrainer reference(corpus);
        reference.train_bpe(c.vocab, 2);
        const Vocabulary trained = train_bpe(corpus, {c.vocab, 2, {}});
        ASSERT_GT(reference.merges.size(), c.min_merges) << "seed " << c.seed;
        EXPECT_EQ(as_tuples(trained.merges), as_tuples(reference.merges)) << "seed " << c.seed;
        EXPECT_EQ(trained.tokens, reference.tokens) << "seed " << c.seed;
        EXPECT_NO_THROW(trained.validate());
    }
}

TEST(ScaffoldBpeTrainer, EqualsTheReferenceAlgorithm) {
    for (unsigned seed : {4u, 5u, 6u}) {
        const PretokenCounts corpus = random_corpus(seed, 400);
        ReferenceTrainer reference(corpus);
        reference.train_scaffold(300, 2);
        const Vocabulary trained = train_scaffold_bpe(corpus, {300, 2, {}});
        EXPECT_EQ(as_tuples(trained.merges), as_tuples(reference.merges)) << "seed " << seed;
        EXPECT_EQ(trained.tokens, reference.tokens);
        std::vector<int> flags(trained.scaffold.begin(), trained.scaffold.end());
        EXPECT_EQ(flags, reference.scaffold) << "seed " << seed;
        EXPECT_GT(trained.scaffold_count(), 0) << "seed " << seed;
        EXPECT_NO_THROW(trained.validate());
    }
}

PretokenCounts corpus_of(std::initializer_list<std::pair<const char*, std::int64_t>> words) {
    PretokenCounts corpus;
    for (const auto& [w, c] : words) {
        corpus.pieces.emplace_back(w);
        corpus.counts.push_back(c);
    }
    return corpus;
}

// "ab" is merged (13), then mostly consumed by "abc" (10): its remaining frequency 3 is below the
// next pair (x, y) = 5, so it becomes scaffold. Once xy and zw are merged nothing outranks it and
// it is re-activated -- the only way to reach 261 normal tokens.
TEST(ScaffoldBpeTrainer, ReactivatesAScaffoldTokenThatReachesTheHeadAgain) {
    const PretokenCounts corpus = corpus_of({{"abc", 10}, {"ab", 3}, {"xy", 5}, {"zw", 4}});
    std::vector<TrainEvent> events;
    TrainOptions options{261, 2, [&](const TrainEvent& e) { events.push_back(e); }};
    const Vocabulary v = train_scaffold_bpe(corpus, options);
    ASSERT_EQ(v.expanded_size(), 261);
    const std::int32_t ab = 257;
    ASSERT_EQ(v.tokens[ab], "ab");
    using K = TrainEvent::Kind;
    std::vector<std::pair<K, std::int32_t>> steps;
    for (const TrainEvent& e : events) steps.emplace_back(e.kind, e.token);
    const std::vector<std::pair<K, std::int32_t>> expected{
        {K::kMerge, 257}, {K::kMerge, 258}, {K::kScaffold, ab},
        {K::kMerge, 259}, {K::kMerge, 260}, {K::kReactivate, ab}};
    EXPECT_EQ(steps, expected);
    EXPECT_FALSE(v.is_scaffold(ab));
    EXPECT_EQ(v.normal_count(), 261);

    // One normal token fewer: training stops with "ab" still scaffold.
    const Vocabulary smaller = train_scaffold_bpe(corpus, {260, 2, {}});
    EXPECT_TRUE(smaller.is_scaffold(ab));
    EXPECT_EQ(smaller.normal_count(), 260);
    EXPECT_EQ(smaller.expanded_size(), 261);
}

TEST(ScaffoldBpeTrainer, CountsNormalTokensAndNeverEmitsScaffold) {
    const PretokenCounts corpus = random_corpus(11, 3000);
    for (std::int64_t n : {290, 310}) {
        const Vocabulary v = train_scaffold_bpe(corpus, {n, 2, {}});
        ASSERT_GT(v.scaffold_count(), 0);
        EXPECT_EQ(v.normal_count(), n);
        for (std::int32_t id = 0; id < 257; ++id) EXPECT_FALSE(v.is_scaffold(id));
        const Encoder encoder(v, {}, {});
        EXPECT_EQ(encoder.model_vocab_size(), n);
        const std::vector<std::int32_t> model = model_ids(v);
        bool merged_into_scaffold = false;
        for (const std::string& piece : corpus.pieces) {
            // Before the rewrite the merge loop does produce scaffold tokens ...
            for (std::int32_t id : encoder.merge_pretoken(piece)) merged_into_scaffold |= v.is_scaffold(id);
            // ... the output holds normal tokens only and spells the piece.
            std::vector<std::int32_t> ids;
            encoder.encode(piece, ids);
            std::string decoded;
            for (std::int32_t id : ids) {
                ASSERT_GE(id, 0);
                ASSERT_LT(id, n);
                const auto expanded = std::find(model.begin(), model.end(), id) - model.begin();
                ASSERT_FALSE(v.is_scaffold(static_cast<std::int32_t>(expanded)));
                decoded += v.tokens[expanded];
            }
            EXPECT_EQ(decoded, piece);
        }
        EXPECT_TRUE(merged_into_scaffold);
    }
}

}  // namespace
}  // namespace moelab::plugins::bpe_family

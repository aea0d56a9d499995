#include "trainer.h"

#include <functional>
#include <optional>
#include <queue>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace moelab::plugins::bpe_family {

namespace {

std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
}

struct PairEntry {
    std::int64_t count;
    std::int32_t left, right;
    // Max-heap on count; among equal counts the smallest pair of ids wins.
    bool operator<(const PairEntry& o) const {
        if (count != o.count) return count < o.count;
        return std::tie(left, right) > std::tie(o.left, o.right);
    }
};

struct MergeOutcome {
    std::int32_t result;
    bool created;          // a new token (not an existing byte string formed again)
    std::int64_t applied;  // occurrences replaced, weighted by pre-token counts
};

// The corpus as symbol sequences with the pair statistics the merge loop needs.
class PairMerger {
public:
    explicit PairMerger(const PretokenCounts& corpus) : vocabulary_(Vocabulary::bytes_only()) {
        for (std::int32_t id = 0; id < kFirstLearnedId; ++id) id_of_.emplace(vocabulary_.tokens[id], id);
        frequency_.assign(kFirstLearnedId, 0);
        words_.resize(corpus.pieces.size());
        stamp_.assign(corpus.pieces.size(), -1);
        for (std::size_t w = 0; w < corpus.pieces.size(); ++w) {
            Word& word = words_[w];
            word.count = corpus.counts[w];
            for (unsigned char c : corpus.pieces[w]) {
                word.symbols.push_back(c);
                frequency_[c] += word.count;
            }
            for (std::size_t i = 0; i + 1 < word.symbols.size(); ++i) {
                const std::uint64_t key = pair_key(word.symbols[i], word.symbols[i + 1]);
                pair_count_[key] += word.count;
                auto& list = pair_words_[key];
                if (list.empty() || list.back() != static_cast<std::int32_t>(w)) {
                    list.push_back(static_cast<std::int32_t>(w));
                }
            }
        }
        rebuild_heap();
    }

    // The most frequent pair, or nullopt when none is left. Drops stale heap entries.
    std::optional<PairEntry> best_pair() {
        while (!heap_.empty()) {
            const PairEntry top = heap_.top();
            auto it = pair_count_.find(pair_key(top.left, top.right));
            if (it != pair_count_.end() && it->second == top.count) return top;
            heap_.pop();
        }
        return std::nullopt;
    }

    // Replaces every occurrence of (left, right), left to right within each pre-token.
    MergeOutcome merge(std::int32_t left, std::int32_t right) {
        const std::uint64_t key = pair_key(left, right);
        heap_.pop();  // the caller merges the pair best_pair() returned
        const std::string bytes = vocabulary_.tokens[left] + vocabulary_.tokens[right];
        MergeOutcome outcome{0, false, 0};
        if (auto it = id_of_.find(bytes); it != id_of_.end()) {
            outcome.result = it->second;
        } else {
            outcome.result = vocabulary_.expanded_size();
            outcome.created = true;
            vocabulary_.tokens.push_back(bytes);
            vocabulary_.scaffold.push_back(0);
            frequency_.push_back(0);
            id_of_.emplace(bytes, outcome.result);
        }
        vocabulary_.merges.push_back({left, right, outcome.result});
        const std::int32_t result = outcome.result;
        ++merge_index_;

        std::vector<std::int32_t> affected = std::move(pair_words_[key]);
        pair_words_.erase(key);
        pair_count_.erase(key);
        delta_.clear();
        for (std::int32_t w : affected) {
            if (stamp_[w] == merge_index_) continue;  // listed twice
            stamp_[w] = merge_index_;
            Word& word = words_[w];
            auto& s = word.symbols;
            bool found = false;
            for (std::size_t i = 0; i + 1 < s.size(); ++i) {
                if (s[i] == left && s[i + 1] == right) {
                    found = true;
                    break;
                }
            }
            if (!found) continue;  // the pair left this pre-token in an earlier merge
            for (std::size_t i = 0; i + 1 < s.size(); ++i) {
                const std::uint64_t k = pair_key(s[i], s[i + 1]);
                if (k != key) delta_[k] -= word.count;
            }
            std::size_t write = 0;
            for (std::size_t i = 0; i < s.size();) {
                if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
                    s[write++] = result;
                    outcome.applied += word.count;
                    i += 2;
                } else {
                    s[write++] = s[i++];
                }
            }
            s.resize(write);
            for (std::size_t i = 0; i + 1 < s.size(); ++i) {
                const std::uint64_t k = pair_key(s[i], s[i + 1]);
                delta_[k] += word.count;
                if (s[i] == result || s[i + 1] == result) {
                    auto& list = pair_words_[k];
                    if (list.empty() || list.back() != w) list.push_back(w);
                }
            }
        }
        for (const auto& [k, change] : delta_) {
            if (change == 0) continue;
            auto it = pair_count_.find(k);
            const std::int64_t count = (it == pair_count_.end() ? 0 : it->second) + change;
            if (count <= 0) {
                if (it != pair_count_.end()) pair_count_.erase(it);
                continue;
            }
            if (it == pair_count_.end()) {
                pair_count_.emplace(k, count);
            } else {
                it->second = count;
            }
            heap_.push({count, static_cast<std::int32_t>(k >> 32),
                        static_cast<std::int32_t>(k & 0xffffffffu)});
        }
        // Every count change pushes a new entry and leaves the old one stale; without a rebuild
        // the heap grows with the number of changes, not pairs (tens of millions on a large
        // corpus). Rebuilding when stale entries outnumber live ones keeps it O(pairs), amortised.
        if (heap_.size() > 2 * pair_count_.size() + 1024) rebuild_heap();
        frequency_[result] += outcome.applied;
        frequency_[left] -= outcome.applied;
        frequency_[right] -= outcome.applied;
        return outcome;
    }

    // Occurrences of a token in the current segmentation, weighted by pre-token counts.
    std::int64_t frequency(std::int32_t id) const { return frequency_[static_cast<std::size_t>(id)]; }

    Vocabulary& vocabulary() { return vocabulary_; }

private:
    // The heap holds exactly the live pairs (entries are totally ordered, so ties do not depend on
    // the hash table's order).
    void rebuild_heap() {
        std::vector<PairEntry> entries;
        entries.reserve(pair_count_.size());
        for (const auto& [key, count] : pair_count_) {
            entries.push_back({count, static_cast<std::int32_t>(key >> 32),
                               static_cast<std::int32_t>(key & 0xffffffffu)});
        }
        heap_ = std::priority_queue<PairEntry>(std::less<PairEntry>(), std::move(entries));
    }

    struct Word {
        std::vector<std::int32_t> symbols;
        std::int64_t count = 0;
    };

    Vocabulary vocabulary_;
    std::unordered_map<std::string, std::int32_t> id_of_;
    std::vector<std::int64_t> frequency_;
    std::vector<Word> words_;
    std::vector<std::int64_t> stamp_;  // last merge that rewrote each word
    std::int64_t merge_index_ = 0;
    std::unordered_map<std::uint64_t, std::int64_t> pair_count_;
    // Words that may contain the pair (a superset: entries are not removed when a pair leaves a
    // word; the rewrite checks). New pairs are listed when a merge creates them.
    std::unordered_map<std::uint64_t, std::vector<std::int32_t>> pair_words_;
    std::unordered_map<std::uint64_t, std::int64_t> delta_;
    std::priority_queue<PairEntry> heap_;
};

}  // namespace

Vocabulary train_bpe(const PretokenCounts& corpus, const TrainOptions& options) {
    PairMerger merger(corpus);
    while (merger.vocabulary().expanded_size() < options.vocab_size) {
        const std::optional<PairEntry> best = merger.best_pair();
        if (!best || best->count < options.min_frequency) break;
        const MergeOutcome outcome = merger.merge(best->left, best->right);
        if (options.on_event) {
            options.on_event({TrainEvent::Kind::kMerge, outcome.result, merger.frequency(outcome.result)});
        }
    }
    return std::move(merger.vocabulary());
}

Vocabulary train_scaffold_bpe(const PretokenCounts& corpus, const TrainOptions& options) {
    PairMerger merger(corpus);
    Vocabulary& vocabulary = merger.vocabulary();
    std::int64_t normal = kFirstLearnedId;

    // Scaffold tokens waiting for re-activation, by frequency (lazy: an entry is stale when the
    // token is no longer scaffold or its frequency changed since it was pushed).
    struct TokenEntry {
        std::int64_t frequency;
        std::int32_t id;
        bool operator<(const TokenEntry& o) const {
            if (frequency != o.frequency) return frequency < o.frequency;
            return id > o.id;
        }
    };
    std::priority_queue<TokenEntry> waiting;
    auto best_waiting = [&]() -> std::optional<TokenEntry> {
        while (!waiting.empty()) {
            const TokenEntry top = waiting.top();
            if (vocabulary.is_scaffold(top.id) && merger.frequency(top.id) == top.frequency) return top;
            waiting.pop();
        }
        return std::nullopt;
    };
    // f(Q_head): the frequency of whatever heads the queue, pair or scaffold token.
    auto head_frequency = [&]() -> std::int64_t {
        const auto pair = merger.best_pair();
        const auto token = best_waiting();
        return std::max(pair ? pair->count : 0, token ? token->frequency : 0);
    };

    while (normal < options.vocab_size) {
        const std::optional<PairEntry> pair = merger.best_pair();
        const std::optional<TokenEntry> token = best_waiting();
        // Interpretation: on equal frequency a waiting scaffold token goes first (re-activating
        // it changes no counts).
        if (token && (!pair || token->frequency >= pair->count)) {
            if (token->frequency < options.min_frequency) break;
            waiting.pop();
            vocabulary.scaffold[token->id] = 0;  // re-activated: back in V
            ++normal;
            if (options.on_event) {
                options.on_event({TrainEvent::Kind::kReactivate, token->id, token->frequency});
            }
            continue;
        }
        if (!pair || pair->count < options.min_frequency) break;
        const MergeOutcome outcome = merger.merge(pair->left, pair->right);
        if (options.on_event) {
            options.on_event({TrainEvent::Kind::kMerge, outcome.result, merger.frequency(outcome.result)});
        }
        if (outcome.created) {
            ++normal;
        } else if (vocabulary.is_scaffold(outcome.result)) {
            // Interpretation: a scaffold token formed again by another pair of parts is normal
            // again (it is evidently in use); Algorithm 1 does not cover this case.
            vocabulary.scaffold[outcome.result] = 0;
            ++normal;
            if (options.on_event) {
                options.on_event({TrainEvent::Kind::kReactivate, outcome.result,
                                  merger.frequency(outcome.result)});
            }
        }
        // The queue holds every scaffold token at its current frequency: parts that were already
        // scaffold re-enter with the frequency this merge left them.
        const std::int32_t left = pair->left, right = pair->right;
        auto parts = left == right ? std::vector<std::int32_t>{left}
                                   : std::vector<std::int32_t>{left, right};
        for (const std::int32_t part : parts) {
            if (vocabulary.is_scaffold(part)) waiting.push({merger.frequency(part), part});
        }
        // f(Q_head) once, after the merge and before marking (both parts compare to it).
        const std::int64_t head = head_frequency();
        for (const std::int32_t part : parts) {
            if (part < kFirstLearnedId || vocabulary.is_scaffold(part)) continue;  // bytes: never
            if (merger.frequency(part) < head) {
                vocabulary.scaffold[part] = 1;
                --normal;
                waiting.push({merger.frequency(part), part});
                if (options.on_event) {
                    options.on_event({TrainEvent::Kind::kScaffold, part, merger.frequency(part)});
                }
            }
        }
    }
    return std::move(vocabulary);
}

}  // namespace moelab::plugins::bpe_family

#include "bpe_model.h"

#include <fstream>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "pretokenizer.h"

namespace moelab::plugins::bpe {

namespace {

std::uint64_t key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
}

struct Word {
    std::vector<std::int32_t> symbols;
    std::int64_t count = 0;
};

struct Candidate {
    std::int64_t count;
    std::int32_t a, b;
    // Max-heap on count; among equal counts the smallest pair wins.
    bool operator<(const Candidate& o) const {
        if (count != o.count) return count < o.count;
        return std::tie(a, b) > std::tie(o.a, o.b);
    }
};

}  // namespace

std::vector<Merge> train_merges(const std::vector<std::string>& files, std::int64_t vocab_size,
                                std::int64_t min_frequency) {
    // Deduplicated pre-tokens with their counts.
    std::unordered_map<std::string, std::int64_t> counts;
    std::vector<std::string_view> pieces;
    for (const std::string& file : files) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read " + file);
        std::stringstream buffer;
        buffer << in.rdbuf();
        const std::string text = buffer.str();
        pieces.clear();
        pretokenize(text, pieces);
        for (std::string_view piece : pieces) ++counts[std::string(piece)];
    }
    std::vector<Word> words;
    words.reserve(counts.size());
    for (const auto& [text, count] : counts) {
        Word w;
        for (unsigned char c : text) w.symbols.push_back(c);
        w.count = count;
        words.push_back(std::move(w));
    }

    std::unordered_map<std::uint64_t, std::int64_t> pair_count;
    std::unordered_map<std::uint64_t, std::unordered_set<std::int32_t>> pair_words;
    for (std::size_t w = 0; w < words.size(); ++w) {
        const auto& s = words[w].symbols;
        for (std::size_t i = 0; i + 1 < s.size(); ++i) {
            pair_count[key(s[i], s[i + 1])] += words[w].count;
            pair_words[key(s[i], s[i + 1])].insert(static_cast<std::int32_t>(w));
        }
    }
    std::priority_queue<Candidate> heap;
    for (const auto& [k, c] : pair_count) {
        heap.push({c, static_cast<std::int32_t>(k >> 32), static_cast<std::int32_t>(k & 0xffffffffu)});
    }

    std::vector<Merge> merges;
    const std::int64_t wanted = vocab_size - kFirstMergeId;
    while (static_cast<std::int64_t>(merges.size()) < wanted && !heap.empty()) {
        const Candidate top = heap.top();
        heap.pop();
        const std::uint64_t k = key(top.a, top.b);
        auto it = pair_count.find(k);
        if (it == pair_count.end() || it->second != top.count) continue;  // stale entry
        if (top.count < min_frequency) break;
        const std::int32_t id = kFirstMergeId + static_cast<std::int32_t>(merges.size());
        merges.emplace_back(top.a, top.b);

        // Rewrite every word containing the pair, updating counts of the pairs that change.
        const std::unordered_set<std::int32_t> affected = std::move(pair_words[k]);
        pair_words.erase(k);
        pair_count.erase(k);
        std::unordered_map<std::uint64_t, std::int64_t> delta;
        for (std::int32_t w : affected) {
            Word& word = words[w];
            auto& s = word.symbols;
            for (std::size_t i = 0; i + 1 < s.size(); ++i) {
                if (key(s[i], s[i + 1]) != k) delta[key(s[i], s[i + 1])] -= word.count;
            }
            std::vector<std::int32_t> merged;
            merged.reserve(s.size());
            for (std::size_t i = 0; i < s.size();) {
                if (i + 1 < s.size() && s[i] == top.a && s[i + 1] == top.b) {
                    merged.push_back(id);
                    i += 2;
                } else {
                    merged.push_back(s[i++]);
                }
            }
            s = std::move(merged);
            for (std::size_t i = 0; i + 1 < s.size(); ++i) {
                delta[key(s[i], s[i + 1])] += word.count;
                pair_words[key(s[i], s[i + 1])].insert(w);
            }
        }
        for (const auto& [pair, change] : delta) {
            if (change == 0) continue;
            std::int64_t& count = pair_count[pair];
            count += change;
            if (count <= 0) {
                pair_count.erase(pair);
                continue;
            }
            heap.push({count, static_cast<std::int32_t>(pair >> 32),
                       static_cast<std::int32_t>(pair & 0xffffffffu)});
        }
        // Words that no longer contain a pair stay listed under it; harmless, since the rewrite
        // only touches occurrences actually present.
    }
    return merges;
}

BpeModel::BpeModel(std::vector<Merge> merges) : merges_(std::move(merges)) {
    bytes_of_.resize(static_cast<std::size_t>(vocab_size()));
    for (int b = 0; b < 256; ++b) bytes_of_[b] = std::string(1, static_cast<char>(b));
    for (std::size_t r = 0; r < merges_.size(); ++r) {
        const auto [a, b] = merges_[r];
        const std::int32_t id = kFirstMergeId + static_cast<std::int32_t>(r);
        if (a < 0 || b < 0 || a >= id || b >= id || a == kEndOfDocument || b == kEndOfDocument) {
            throw std::runtime_error("merge " + std::to_string(r) + " refers to an invalid id");
        }
        rank_.emplace(key(a, b), static_cast<std::int32_t>(r));
        bytes_of_[id] = bytes_of_[a] + bytes_of_[b];
    }
}

void BpeModel::encode_pretoken(std::string_view piece, std::vector<std::int32_t>& out) const {
    std::vector<std::int32_t> symbols(piece.begin(), piece.end());
    for (auto& s : symbols) s = static_cast<unsigned char>(s);
    while (symbols.size() > 1) {
        std::int32_t best_rank = -1;
        for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
            auto it = rank_.find(key(symbols[i], symbols[i + 1]));
            if (it != rank_.end() && (best_rank < 0 || it->second < best_rank)) best_rank = it->second;
        }
        if (best_rank < 0) break;
        const auto [a, b] = merges_[best_rank];
        const std::int32_t id = kFirstMergeId + best_rank;
        std::size_t write = 0;
        for (std::size_t i = 0; i < symbols.size();) {
            if (i + 1 < symbols.size() && symbols[i] == a && symbols[i + 1] == b) {
                symbols[write++] = id;
                i += 2;
            } else {
                symbols[write++] = symbols[i++];
            }
        }
        symbols.resize(write);
    }
    out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::encode(std::string_view text, std::vector<std::int32_t>& out) const {
    std::vector<std::string_view> pieces;
    pretokenize(text, pieces);
    for (std::string_view piece : pieces) encode_pretoken(piece, out);
}

std::string BpeModel::decode(const std::int32_t* ids, std::size_t count) const {
    std::string text;
    for (std::size_t i = 0; i < count; ++i) {
        const std::int32_t id = ids[i];
        if (id >= 0 && id < vocab_size() && id != kEndOfDocument) text += bytes_of_[id];
    }
    return text;
}

}  // namespace moelab::plugins::bpe

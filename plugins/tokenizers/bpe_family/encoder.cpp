#include "encoder.h"

#include <functional>
#include <limits>
#include <queue>
#include <tuple>

#include "moelab/sdk/error.h"

namespace moelab::plugins::bpe_family {

namespace {

std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
}

// Unicode characters of a byte string: bytes that do not continue a UTF-8 sequence, and
// continuation bytes at the start (part of a character split across tokens) count one each.
std::int64_t char_length(std::string_view bytes) {
    std::int64_t length = 0;
    bool at_start = true;
    for (unsigned char c : bytes) {
        const bool continuation = (c & 0xC0) == 0x80;
        if (!continuation || at_start) ++length;
        if (!continuation) at_start = false;
    }
    return length;
}

struct TransparentHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

// Pre-token -> model ids, for pre-tokens up to kMaxPieceBytes. Sharded by hash so that threads
// rarely wait on each other; each shard stops growing at kShardEntries (frequent pre-tokens are
// seen first, so the cache fills with them).
class Encoder::Cache {
public:
    static constexpr std::size_t kMaxPieceBytes = 48;
    static constexpr std::size_t kShards = 64;
    static constexpr std::size_t kShardEntries = 1 << 14;

    bool find(std::string_view piece, std::vector<std::int32_t>& out) {
        Shard& shard = shard_of(piece);
        std::lock_guard<std::mutex> lock(shard.mutex);
        auto it = shard.entries.find(piece);
        if (it == shard.entries.end()) return false;
        out.insert(out.end(), it->second.begin(), it->second.end());
        return true;
    }

    void insert(std::string_view piece, const std::int32_t* ids, std::size_t count) {
        Shard& shard = shard_of(piece);
        std::lock_guard<std::mutex> lock(shard.mutex);
        if (shard.entries.size() >= kShardEntries) return;
        shard.entries.emplace(std::string(piece), std::vector<std::int32_t>(ids, ids + count));
    }

private:
    struct Shard {
        std::mutex mutex;
        std::unordered_map<std::string, std::vector<std::int32_t>, TransparentHash, std::equal_to<>>
            entries;
    };
    Shard& shard_of(std::string_view piece) {
        return shards_[TransparentHash{}(piece) % kShards];
    }
    std::array<Shard, kShards> shards_;
};

Encoder::Encoder(const Vocabulary& vocabulary, PretokenizerConfig pretokenizer,
                 EncodingOptions options)
    : pretokenizer_(pretokenizer), cache_(std::make_unique<Cache>()) {
    const std::vector<std::int32_t> model = model_ids(vocabulary);
    const bool has_scaffold = vocabulary.scaffold_count() > 0;
    const auto demolition = has_scaffold ? demolition_sequences(vocabulary)
                                         : std::vector<std::vector<std::int32_t>>{};
    rewrite_begin_.reserve(vocabulary.tokens.size() + 1);
    for (std::int32_t id = 0; id < vocabulary.expanded_size(); ++id) {
        rewrite_begin_.push_back(static_cast<std::int32_t>(rewrite_ids_.size()));
        if (!vocabulary.is_scaffold(id)) {
            rewrite_ids_.push_back(model[id]);
            model_bytes_.push_back(vocabulary.tokens[id]);
        } else {
            for (std::int32_t part : demolition[id]) rewrite_ids_.push_back(model[part]);
        }
    }
    rewrite_begin_.push_back(static_cast<std::int32_t>(rewrite_ids_.size()));

    if (options.policy == EncodingPolicy::kMergeRank) {
        for (std::size_t r = 0; r < vocabulary.merges.size(); ++r) {
            const Merge& m = vocabulary.merges[r];
            applicable_.emplace(pair_key(m.left, m.right),
                                Applicable{static_cast<std::int64_t>(r), m.result});
        }
        return;
    }
    // Longest first: every split of a normal learned token into two normal tokens applies.
    std::vector<std::int64_t> rank(vocabulary.tokens.size(), -1);
    for (std::size_t r = 0; r < vocabulary.merges.size(); ++r) {
        auto& first = rank[vocabulary.merges[r].result];
        if (first < 0) first = static_cast<std::int64_t>(r);
    }
    std::unordered_map<std::string_view, std::int32_t> id_of;
    for (std::int32_t id = 0; id < vocabulary.expanded_size(); ++id) {
        if (id != kEndOfDocument && !vocabulary.is_scaffold(id)) id_of.emplace(vocabulary.tokens[id], id);
    }
    for (std::int32_t id = kFirstLearnedId; id < vocabulary.expanded_size(); ++id) {
        if (vocabulary.is_scaffold(id)) continue;
        const std::string_view bytes = vocabulary.tokens[id];
        const std::int64_t length = options.length_unit == LengthUnit::kBytes
                                        ? static_cast<std::int64_t>(bytes.size())
                                        : char_length(bytes);
        // Smaller is better: longer first, then (tie-break by rank) the earlier merge. With the
        // position tie-break equal lengths tie and the scan takes the leftmost.
        const std::int64_t priority = options.tie_break == TieBreak::kRank
                                          ? -length * (std::int64_t{1} << 32) + rank[id]
                                          : -length;
        for (std::size_t split = 1; split < bytes.size(); ++split) {
            auto left = id_of.find(bytes.substr(0, split));
            auto right = id_of.find(bytes.substr(split));
            if (left == id_of.end() || right == id_of.end()) continue;
            applicable_.emplace(pair_key(left->second, right->second), Applicable{priority, id});
        }
    }
}

Encoder::~Encoder() = default;

void Encoder::merge_symbols(std::vector<std::int32_t>& s) const {
    if (s.size() > kLongPieceSymbols) {
        merge_long_symbols(s);
        return;
    }
    while (s.size() > 1) {
        std::int64_t best = std::numeric_limits<std::int64_t>::max();
        std::size_t at = s.size();
        std::int32_t result = -1;
        for (std::size_t i = 0; i + 1 < s.size(); ++i) {
            auto it = applicable_.find(pair_key(s[i], s[i + 1]));
            if (it != applicable_.end() && it->second.priority < best) {
                best = it->second.priority;
                at = i;
                result = it->second.result;
            }
        }
        if (result < 0) return;
        // Every occurrence of the pair, non-overlapping, left to right. None lies left of `at`:
        // it would have the same priority and an earlier position.
        const std::int32_t left = s[at], right = s[at + 1];
        std::size_t write = at;
        for (std::size_t i = at; i < s.size();) {
            if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
                s[write++] = result;
                i += 2;
            } else {
                s[write++] = s[i++];
            }
        }
        s.resize(write);
    }
}

// The same rounds as the scan above in O(L log L) for a piece of L symbols (the scan is
// O(L * rounds), quadratic for a long run of spaces, digits or punctuation). The symbols form a
// linked list; a heap holds one entry per adjacent pair, ordered by (priority, position), and
// entries whose symbols changed since are skipped when they surface. A round takes the best entry
// and then every other entry of the same pair and priority, in position order -- exactly the
// occurrences the scan replaces, left to right, non-overlapping -- and only then adds the pairs the
// round created, as the scan's next round would see them.
void Encoder::merge_long_symbols(std::vector<std::int32_t>& s) const {
    struct Entry {
        std::int64_t priority;
        std::int32_t position, left, right, result;
        bool operator>(const Entry& o) const {
            return std::tie(priority, position) > std::tie(o.priority, o.position);
        }
    };
    const auto n = static_cast<std::int32_t>(s.size());
    std::vector<std::int32_t> next(static_cast<std::size_t>(n)), previous(static_cast<std::size_t>(n));
    for (std::int32_t i = 0; i < n; ++i) {
        next[i] = i + 1 < n ? i + 1 : -1;
        previous[i] = i - 1;
    }
    std::vector<char> alive(static_cast<std::size_t>(n), 1);
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    auto push_pair = [&](std::int32_t at) {
        if (at < 0 || next[at] < 0) return;
        auto it = applicable_.find(pair_key(s[at], s[next[at]]));
        if (it != applicable_.end()) {
            heap.push({it->second.priority, at, s[at], s[next[at]], it->second.result});
        }
    };
    auto still_there = [&](const Entry& e) {
        return alive[e.position] && s[e.position] == e.left && next[e.position] >= 0 &&
               s[next[e.position]] == e.right;
    };
    for (std::int32_t i = 0; i + 1 < n; ++i) push_pair(i);

    std::vector<Entry> round, deferred;
    std::vector<std::int32_t> merged;
    while (!heap.empty()) {
        const Entry best = heap.top();
        heap.pop();
        if (!still_there(best)) continue;
        round.assign(1, best);
        deferred.clear();
        while (!heap.empty() && heap.top().priority == best.priority) {
            const Entry e = heap.top();
            heap.pop();
            if (!still_there(e)) continue;
            (e.left == best.left && e.right == best.right ? round : deferred).push_back(e);
        }
        for (const Entry& e : deferred) heap.push(e);  // another pair of equal priority: later rounds
        merged.clear();
        for (const Entry& e : round) {  // ascending positions
            if (!still_there(e)) continue;  // overlapped by the previous occurrence ("aaa")
            const std::int32_t right = next[e.position];
            s[e.position] = e.result;
            alive[right] = 0;
            next[e.position] = next[right];
            if (next[right] >= 0) previous[next[right]] = e.position;
            merged.push_back(e.position);
        }
        for (std::int32_t at : merged) {
            if (!alive[at]) continue;
            push_pair(previous[at]);
            push_pair(at);
        }
    }
    std::size_t write = 0;
    for (std::int32_t i = 0; i >= 0; i = next[i]) s[write++] = s[i];
    s.resize(write);
}

std::vector<std::int32_t> Encoder::merge_pretoken(std::string_view piece) const {
    std::vector<std::int32_t> symbols(piece.begin(), piece.end());
    for (auto& s : symbols) s = static_cast<unsigned char>(s);
    merge_symbols(symbols);
    return symbols;
}

void Encoder::encode_piece(std::string_view piece, std::vector<std::int32_t>& symbols,
                           std::vector<std::int32_t>& out) const {
    const bool cacheable = piece.size() <= Cache::kMaxPieceBytes;
    if (cacheable && cache_->find(piece, out)) return;
    symbols.clear();
    for (unsigned char c : piece) symbols.push_back(c);
    merge_symbols(symbols);
    const std::size_t first = out.size();
    for (std::int32_t id : symbols) {
        out.insert(out.end(), rewrite_ids_.begin() + rewrite_begin_[id],
                   rewrite_ids_.begin() + rewrite_begin_[id + 1]);
    }
    if (cacheable) cache_->insert(piece, out.data() + first, out.size() - first);
}

void Encoder::encode(std::string_view text, std::vector<std::int32_t>& out) const {
    std::vector<std::int32_t> symbols;  // reused by every piece of this call
    symbols.reserve(64);
    for_each_piece(text, pretokenizer_,
                   [&](std::string_view piece) { encode_piece(piece, symbols, out); });
}

std::string Encoder::decode(const std::int32_t* ids, std::size_t count) const {
    std::string text;
    text.reserve(count * 4);
    for (std::size_t i = 0; i < count; ++i) {
        const std::int32_t id = ids[i];
        if (id < 0 || id >= model_vocab_size()) {
            throw sdk::Error("cannot decode id " + std::to_string(id) + ": the vocabulary has " +
                             std::to_string(model_vocab_size()) + " ids");
        }
        text += model_bytes_[static_cast<std::size_t>(id)];
    }
    return text;
}

}  // namespace moelab::plugins::bpe_family

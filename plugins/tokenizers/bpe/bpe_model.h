#pragma once

// Byte-level BPE: ids 0..255 are the bytes, 256 is the end-of-document token, merge r creates id
// 257 + r. Training is the textbook algorithm (repeatedly merge the most frequent adjacent pair;
// ties go to the smallest pair of ids) with incremental pair counts and a lazily updated heap, over
// deduplicated pre-tokens. Encoding applies, within each pre-token, the lowest-ranked available
// merge until none applies.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace moelab::plugins::bpe {

inline constexpr std::int32_t kEndOfDocument = 256;
inline constexpr std::int32_t kFirstMergeId = 257;

using Merge = std::pair<std::int32_t, std::int32_t>;

// `vocab_size` counts bytes, the end-of-document token and merges. Training stops early when no
// pair occurs at least `min_frequency` times.
std::vector<Merge> train_merges(const std::vector<std::string>& files, std::int64_t vocab_size,
                                std::int64_t min_frequency);

class BpeModel {
public:
    explicit BpeModel(std::vector<Merge> merges);

    std::int64_t vocab_size() const { return kFirstMergeId + static_cast<std::int64_t>(merges_.size()); }
    const std::vector<Merge>& merges() const { return merges_; }

    void encode(std::string_view text, std::vector<std::int32_t>& out) const;
    std::string decode(const std::int32_t* ids, std::size_t count) const;

private:
    void encode_pretoken(std::string_view piece, std::vector<std::int32_t>& out) const;

    std::vector<Merge> merges_;
    std::unordered_map<std::uint64_t, std::int32_t> rank_;  // pair -> merge rank
    std::vector<std::string> bytes_of_;                     // id -> the bytes it stands for
};

}  // namespace moelab::plugins::bpe

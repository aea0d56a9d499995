#pragma once

// Encoding for the BPE family. Within each pre-token the encoder repeatedly picks the applicable
// pair of adjacent tokens with the best priority and replaces all its non-overlapping occurrences,
// left to right, until no pair applies; then it rewrites the result into model ids (Scaffold-BPE:
// each scaffold token becomes its demolition sequence). The policies differ only in which pairs
// apply and how they are ranked (methods.md §10.2 "encode-time pair-priority function"):
//
//   merge rank (BPE, Scaffold-BPE): the recorded merges, earliest first;
//   longest first (LBPE, §7.2): any two adjacent tokens whose concatenation is a (normal)
//     vocabulary token; the longest result first, ties by the result's merge rank (or by position).
//
// Encoding is thread-safe. Results of short pre-tokens are cached (sharded, bounded), so frequent
// words are looked up instead of re-merged.

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pretokenizer.h"
#include "vocabulary.h"

namespace moelab::plugins::bpe_family {

enum class EncodingPolicy { kMergeRank, kLongestFirst };
enum class LengthUnit { kBytes, kChars };
enum class TieBreak { kRank, kPosition };

struct EncodingOptions {
    EncodingPolicy policy = EncodingPolicy::kMergeRank;
    LengthUnit length_unit = LengthUnit::kBytes;  // longest first only
    TieBreak tie_break = TieBreak::kRank;         // longest first only
};

class Encoder {
public:
    Encoder(const Vocabulary& vocabulary, PretokenizerConfig pretokenizer, EncodingOptions options);
    ~Encoder();

    // Appends model ids.
    void encode(std::string_view text, std::vector<std::int32_t>& out) const;
    // The bytes of the model ids; the end-of-document id decodes to nothing. Throws sdk::Error on
    // an id outside the vocabulary.
    std::string decode(const std::int32_t* ids, std::size_t count) const;

    std::int64_t model_vocab_size() const { return static_cast<std::int64_t>(model_bytes_.size()); }
    // Expanded ids of a pre-token after the merge loop, before the rewrite (for tests).
    std::vector<std::int32_t> merge_pretoken(std::string_view piece) const;

private:
    struct Applicable {
        std::int64_t priority;  // smaller first
        std::int32_t result;
    };
    class Cache;

    // Pieces longer than this take the heap-based loop (same result, O(L log L)).
    static constexpr std::size_t kLongPieceSymbols = 64;

    void merge_symbols(std::vector<std::int32_t>& symbols) const;
    void merge_long_symbols(std::vector<std::int32_t>& symbols) const;
    void encode_piece(std::string_view piece, std::vector<std::int32_t>& symbols,
                      std::vector<std::int32_t>& out) const;

    PretokenizerConfig pretokenizer_;
    std::unordered_map<std::uint64_t, Applicable> applicable_;  // (left, right) -> merge
    // expanded id -> model ids it is written as: [rewrite_begin_[id], rewrite_begin_[id + 1]).
    std::vector<std::int32_t> rewrite_begin_, rewrite_ids_;
    std::vector<std::string> model_bytes_;  // model id -> bytes
    std::unique_ptr<Cache> cache_;
};

}  // namespace moelab::plugins::bpe_family

#pragma once

// The training corpus reduced to its distinct pre-tokens and their counts: BPE never merges
// across pre-tokens, so the trainer works on this table instead of the text. Files are streamed in
// blocks (cut at line ends) and each block is split over threads.

#include <cstdint>
#include <string>
#include <vector>

#include "pretokenizer.h"

namespace moelab::plugins::bpe_family {

struct PretokenCounts {
    std::vector<std::string> pieces;
    std::vector<std::int64_t> counts;  // parallel to `pieces`
    std::int64_t bytes = 0;            // size of the text read
};

inline constexpr std::size_t kDefaultBlockBytes = std::size_t{64} << 20;

// `threads` 0: one per hardware thread; `block_bytes`: how much text is read at a time (the counts
// do not depend on either). Throws sdk::Error naming a file that cannot be read.
PretokenCounts count_pretokens(const std::vector<std::string>& files,
                               const PretokenizerConfig& config, unsigned threads = 0,
                               std::size_t block_bytes = kDefaultBlockBytes);

}  // namespace moelab::plugins::bpe_family

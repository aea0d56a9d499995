#pragma once

// BPE training, exact: the merges equal those of the textbook algorithm (count every adjacent
// pair, merge the most frequent everywhere, repeat; ties to the smallest pair of ids), computed
// incrementally: each merge rewrites only the pre-tokens that contain the pair and updates the
// pair counts it changes; the best pair comes from a max-heap with lazy deletion of stale entries.
//
// Scaffold-BPE (methods.md §8.2, Algorithm 1) runs the same loop and, after each merge, marks a
// part of the merge as scaffold when its remaining frequency falls below the next candidate's;
// scaffold tokens wait in the same queue (by frequency) and are re-activated when they reach its
// head again. The vocabulary size then counts normal tokens only.

#include <cstdint>
#include <functional>

#include "pretoken_counts.h"
#include "vocabulary.h"

namespace moelab::plugins::bpe_family {

// What the trainer did, step by step (methods.md §10.2: the trainer's per-merge hook).
struct TrainEvent {
    enum class Kind { kMerge, kScaffold, kReactivate };
    Kind kind;
    std::int32_t token;      // the merge's result, or the token marked / re-activated
    std::int64_t frequency;  // the token's frequency after the step
};

struct TrainOptions {
    std::int64_t vocab_size = 4096;  // bytes + end-of-document + learned (normal) tokens
    std::int64_t min_frequency = 2;  // stop when no pair (or scaffold token) is this frequent
    std::function<void(const TrainEvent&)> on_event;  // optional
};

Vocabulary train_bpe(const PretokenCounts& corpus, const TrainOptions& options);
Vocabulary train_scaffold_bpe(const PretokenCounts& corpus, const TrainOptions& options);

}  // namespace moelab::plugins::bpe_family

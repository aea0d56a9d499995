#pragma once

// Evaluation of one split over every source of a dataset.
//
// Note [Loss of a mixture]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Each source that has the split is evaluated on its own (its losses are what mixture studies
// compare). The overall loss of the split is
//   - with one training source: that source's loss, exactly as before mixtures existed;
//   - with several: the mixture-weighted mean sum_s w_s loss_s / sum_s w_s over the training
//     sources, i.e. the expected loss on the distribution training samples from. (Concatenating
//     the splits instead would weight each source by the size of its validation file, which the
//     recipe does not control.) Its `tokens` is the sum over those sources; its routing
//     statistics cover all of them.
// Evaluation-only sources (no training split) are reported on their own and never enter the
// overall loss: they are out-of-domain measurements.

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/eval/evaluator.h"

namespace moelab::core {

struct SourceEvaluation {
    const SourceTokens* source = nullptr;  // of the evaluated dataset (name, weight, bytes)
    EvalResult result;
};

struct SplitEvaluation {
    EvalResult overall;
    std::vector<SourceEvaluation> sources;  // every source that has the split, in recipe order
    bool weighted = false;                  // overall is a weighted mean of several sources
};

SplitEvaluation evaluate_split(LanguageModel& model, const Dataset& data, Split split,
                               std::int64_t seq_len, std::int64_t batch_size,
                               std::int64_t max_batches, const EvalSetup& setup);

}  // namespace moelab::core

#include "core/eval/split_evaluation.h"

#include "core/data/batcher.h"

namespace moelab::core {

SplitEvaluation evaluate_split(LanguageModel& model, const Dataset& data, Split split,
                               std::int64_t seq_len, std::int64_t batch_size,
                               std::int64_t max_batches, const EvalSetup& setup) {
    SplitEvaluation evaluation;
    std::size_t training_sources = 0;
    for (const SourceTokens& source : data.sources()) {
        if (source.has(split) && source.weight > 0) ++training_sources;
    }
    evaluation.weighted = training_sources > 1;
    double weight_sum = 0, weighted_loss = 0;
    for (const SourceTokens& source : data.sources()) {
        if (!source.has(split)) continue;
        const bool in_overall = source.weight > 0;
        EvalSetup source_setup = setup;
        // The overall routing statistics cover every source in the overall loss.
        if (in_overall) source_setup.routing = &evaluation.overall.routing;
        const auto batches =
            evaluation_batches(source.tokens(split), seq_len, batch_size, max_batches);
        EvalResult result = evaluate(model, batches, source_setup);
        if (in_overall) {
            weight_sum += source.weight;
            weighted_loss += source.weight * result.loss();
            evaluation.overall.tokens += result.tokens;
            evaluation.overall.nll_sum += result.nll_sum;  // exact for a single source
        }
        evaluation.sources.push_back({&source, std::move(result)});
    }
    if (setup.parallel != nullptr) evaluation.overall.routing.sum_over(setup.parallel->world());
    if (evaluation.weighted) {
        // loss() = nll_sum / tokens is the weighted mean (Note [Loss of a mixture]).
        evaluation.overall.nll_sum =
            weighted_loss / weight_sum * static_cast<double>(evaluation.overall.tokens);
    }
    return evaluation;
}

}  // namespace moelab::core

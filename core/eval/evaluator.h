#pragma once

// Evaluation of a language model on token windows: mean next-token cross-entropy (nats),
// perplexity, and the MoE layers' routing statistics over the evaluated tokens.

#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/data/token_batch.h"
#include "core/dist/parallelism.h"
#include "core/model/chunked_lm_loss.h"
#include "core/model/language_model.h"
#include "core/moe/routing_stats.h"

namespace moelab::core {

struct EvalSetup {
    at::Device device = at::kCPU;
    bool autocast_bf16 = false;
    Perturbation perturbation;  // kind none: plain evaluation
    std::int64_t step = 0;      // the model's training step, for messages
    // Where routing statistics accumulate; null: the result's own. (Several evaluations can
    // share one, e.g. the sources of a mixture.)
    RoutingStats* routing = nullptr;
    // Processes sharing the evaluation (Note [Parallel layout]); null: this one alone. Every
    // process evaluates the same batches, each its share of every batch's rows, and the result
    // is the whole batch's on every process. Routing statistics in `routing` stay per process
    // (the owner of a shared object sums it once, RoutingStats::sum_over).
    Parallelism* parallel = nullptr;
    // Sees, and may replace, every MoE layer's routing (routing traces); null: none.
    RoutingTap* routing_tap = nullptr;
};

struct EvalResult {
    double nll_sum = 0;       // nats, summed over the predicted tokens the loss counts
    std::int64_t tokens = 0;  // predicted tokens the loss counts (Note [Response-only loss])
    RoutingStats routing;

    double loss() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
    double perplexity() const;
    nlohmann::json to_json() const;  // {"loss", "ppl", "tokens", "moe"}
};

// Mean (or summed) next-token cross-entropy over the targets that `batch` counts; logits
// (batch, length - 1, vocab) for its inputs. Computed in fp32. The mean of a batch that counts no
// target is NaN; callers that may meet one sum and divide themselves.
at::Tensor next_token_loss(const at::Tensor& logits, const TokenBatch& batch, bool sum);

// The targets next_token_loss counts, flat (tokens,), kIgnoredTarget where `batch` counts none.
at::Tensor next_token_targets(const TokenBatch& batch);

EvalResult evaluate(LanguageModel& model, const std::vector<TokenBatch>& batches,
                    const EvalSetup& setup);

}  // namespace moelab::core

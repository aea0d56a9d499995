#pragma once

// Autoregressive generation from a LanguageModel: prompts of different lengths decoded together
// (left-padded, Note [Positions and padding]), through the attention caches or, for comparison,
// by recomputing the whole prefix at every step. Runs in inference mode.

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/ATen.h>

#include "core/inference/sampler.h"
#include "core/model/language_model.h"

namespace moelab::core {

struct GenerationOptions {
    std::int64_t max_new = 64;  // new tokens per prompt (fewer when a row ends)
    SamplingOptions sampling;
    // false: no cache; the whole sequence so far is recomputed for every new token.
    bool use_cache = true;
    // A row ends when it produces this id (not included in its tokens); -1: never.
    std::int32_t end_id = -1;
    at::Device device = at::kCPU;
    bool autocast_bf16 = false;
    // Called after every step with the new token of each row, (batch,) int64 on the CPU, and
    // which rows were still running when it was produced, (batch,) bool.
    std::function<void(const at::Tensor& tokens, const at::Tensor& running)> on_step;
};

struct GenerationResult {
    std::vector<std::vector<std::int32_t>> tokens;  // per prompt, the new tokens
    std::int64_t prompt_tokens = 0;                 // real (not padding) prompt tokens
    double prefill_seconds = 0;                     // the prompt's forward and the first token
    std::int64_t decode_steps = 0;                  // forwards after the prefill
    std::int64_t decoded_tokens = 0;                // tokens those steps produced (all rows)
    double decode_seconds = 0;
    std::int64_t cache_capacity = 0;          // token slots per row (0 without cache)
    std::int64_t cache_bytes_per_token = -1;  // all layers; -1: a plugin does not say

    double prefill_tokens_per_second() const;
    double decode_tokens_per_second() const;
};

// Every prompt needs at least one token. std::invalid_argument for an empty prompt or max_new < 1;
// DecodingError when the model cannot decode (from the caches).
GenerationResult generate(LanguageModel& model,
                          const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationOptions& options);

}  // namespace moelab::core

#include "core/inference/generation.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include "core/model/decoding_cache.h"
#include "core/system/autocast_scope.h"

namespace moelab::core {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The last position's logits, (batch, vocab) float32.
at::Tensor last_logits(LanguageModel& model, const at::Tensor& tokens, const at::Tensor& positions,
                       DecodingCache* cache, const GenerationOptions& options) {
    ForwardOptions forward;
    forward.positions = positions;
    forward.cache = cache;
    forward.last_logits_only = true;  // the prefill needs the next token's logits, not all
    CudaAutocastScope autocast(options.autocast_bf16);
    const at::Tensor logits = model.forward(tokens, forward).logits;
    return logits.select(1, 0).to(at::kFloat);
}

}  // namespace

double GenerationResult::prefill_tokens_per_second() const {
    return prefill_seconds > 0 ? static_cast<double>(prompt_tokens) / prefill_seconds : 0.0;
}

double GenerationResult::decode_tokens_per_second() const {
    return decode_seconds > 0 ? static_cast<double>(decoded_tokens) / decode_seconds : 0.0;
}

GenerationResult generate(LanguageModel& model,
                          const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationOptions& options) {
    if (prompts.empty()) throw std::invalid_argument("no prompt to generate from");
    if (options.max_new < 1) {
        throw std::invalid_argument(
            fmt::format("the number of new tokens must be at least 1, got {}", options.max_new));
    }
    std::int64_t longest = 0;
    GenerationResult result;
    for (const auto& prompt : prompts) {
        if (prompt.empty()) throw std::invalid_argument("a prompt has no tokens");
        longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(prompt.size()));
        result.prompt_tokens += static_cast<std::int64_t>(prompt.size());
    }
    const auto batch = static_cast<std::int64_t>(prompts.size());
    c10::InferenceMode inference;
    model.eval();
    Sampler sampler(options.sampling);

    // Left padding: every row's last prompt token sits in the last slot, so the next token of
    // every row comes from the same column. Padding slots hold token 0 at position -1.
    at::Tensor tokens = at::zeros({batch, longest}, at::kLong);
    at::Tensor positions = at::full({batch, longest}, -1, at::kLong);
    at::Tensor next_position = at::empty({batch, 1}, at::kLong);
    for (std::int64_t b = 0; b < batch; ++b) {
        const auto& prompt = prompts[static_cast<std::size_t>(b)];
        const auto length = static_cast<std::int64_t>(prompt.size());
        for (std::int64_t i = 0; i < length; ++i) {
            tokens[b][longest - length + i] = static_cast<std::int64_t>(prompt[i]);
        }
        positions[b].narrow(0, longest - length, length).copy_(at::arange(length));
        next_position[b][0] = length;
    }
    tokens = tokens.to(options.device);
    positions = positions.to(options.device);

    std::unique_ptr<DecodingCache> cache;
    if (options.use_cache) {
        cache = model.make_decoding_cache(batch, longest + options.max_new);
        result.cache_capacity = cache->capacity();
    }
    result.tokens.resize(prompts.size());
    at::Tensor running = at::ones({batch}, at::kBool);

    auto start = std::chrono::steady_clock::now();
    at::Tensor next = sampler.next(last_logits(model, tokens, positions, cache.get(), options));
    result.prefill_seconds = seconds_since(start);
    // Known once the prefill has fixed the caches' dtype.
    if (cache != nullptr) result.cache_bytes_per_token = cache->bytes_per_token();
    start = std::chrono::steady_clock::now();
    for (std::int64_t step = 0;; ++step) {
        // Record the token just produced, then stop rows that ended.
        const auto* ids = next.data_ptr<std::int64_t>();
        const auto* alive = running.data_ptr<bool>();
        const at::Tensor produced_by = running.clone();
        for (std::int64_t b = 0; b < batch; ++b) {
            if (!alive[b]) continue;
            if (ids[b] == options.end_id) {
                running[b] = false;
            } else {
                result.tokens[static_cast<std::size_t>(b)].push_back(
                    static_cast<std::int32_t>(ids[b]));
            }
        }
        if (options.on_step) options.on_step(next, produced_by);
        if (step + 1 >= options.max_new || !running.any().item<bool>()) break;

        const at::Tensor new_token = next.view({batch, 1}).to(options.device);
        const at::Tensor new_position = (next_position + step).to(options.device);
        if (cache != nullptr) {
            next = sampler.next(last_logits(model, new_token, new_position, cache.get(), options));
        } else {
            tokens = at::cat({tokens, new_token}, 1);
            positions = at::cat({positions, new_position}, 1);
            next = sampler.next(last_logits(model, tokens, positions, nullptr, options));
        }
        ++result.decode_steps;
        result.decoded_tokens += running.sum().item<std::int64_t>();
    }
    result.decode_seconds = seconds_since(start);
    return result;
}

}  // namespace moelab::core

#include "core/inference/sampler.h"

#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "moelab/sdk/init.h"

namespace moelab::core {

Sampler::Sampler(const SamplingOptions& options)
    : options_(options), generator_(sdk::make_generator(options.seed)) {
    if (!(options.temperature >= 0)) {
        throw std::invalid_argument(
            fmt::format("temperature must be at least 0, got {}", options.temperature));
    }
    if (options.top_k < 0) {
        throw std::invalid_argument(fmt::format("top-k must be at least 0, got {}", options.top_k));
    }
    if (!(options.top_p > 0 && options.top_p <= 1)) {
        throw std::invalid_argument(fmt::format("top-p must be in (0, 1], got {}", options.top_p));
    }
}

at::Tensor Sampler::distribution(const at::Tensor& logits) const {
    const at::Tensor scores = logits.detach().to(at::kCPU, at::kFloat);
    const std::int64_t vocab = scores.size(-1);
    if (options_.temperature == 0) {
        return at::one_hot(scores.argmax(-1), vocab).to(at::kFloat);
    }
    at::Tensor scaled = scores / options_.temperature;
    if (options_.top_k > 0 && options_.top_k < vocab) {
        // Keep the k largest; ties at the k-th value stay in (their order would be arbitrary).
        const at::Tensor kth =
            std::get<0>(scaled.topk(options_.top_k, -1)).narrow(-1, options_.top_k - 1, 1);
        scaled = scaled.masked_fill(scaled < kth, -std::numeric_limits<float>::infinity());
    }
    at::Tensor probs = scaled.softmax(-1);
    if (options_.top_p < 1) {
        // The smallest set of most likely tokens whose probability reaches p: a token stays when
        // the probability of the tokens strictly more likely than it is below p.
        const auto [sorted, order] = probs.sort(-1, /*descending=*/true);
        const at::Tensor before = sorted.cumsum(-1) - sorted;
        const at::Tensor keep_sorted = before < options_.top_p;
        const at::Tensor keep = at::zeros_like(keep_sorted).scatter(-1, order, keep_sorted);
        probs = probs.masked_fill(keep.logical_not(), 0);
        probs = probs / probs.sum(-1, /*keepdim=*/true);
    }
    return probs;
}

at::Tensor Sampler::next(const at::Tensor& logits) {
    if (options_.temperature == 0) return logits.detach().to(at::kCPU, at::kFloat).argmax(-1);
    return at::multinomial(distribution(logits), 1, /*replacement=*/false, generator_).squeeze(-1);
}

}  // namespace moelab::core

#pragma once

// Choosing the next token from the model's logits: greedy, or sampling with a temperature,
// restricted to the k most likely tokens (top-k) and/or to the smallest set whose probability
// reaches p (top-p, nucleus). Draws come from one seeded CPU generator, so a seed gives the same
// text on every device.

#include <cstdint>

#include <ATen/ATen.h>

namespace moelab::core {

struct SamplingOptions {
    double temperature = 1.0;  // 0: greedy (argmax)
    std::int64_t top_k = 0;    // 0: no limit
    double top_p = 1.0;        // 1: no limit
    std::uint64_t seed = 0;
};

class Sampler {
  public:
    // std::invalid_argument for a negative temperature or top-k, or top-p outside (0, 1].
    explicit Sampler(const SamplingOptions& options);

    // logits: (batch, vocab), any device and dtype. Returns (batch,) int64 on the CPU.
    at::Tensor next(const at::Tensor& logits);

    // The distribution next() samples from, (batch, vocab) float32 on the CPU (one-hot when
    // greedy). For tests and for reporting.
    at::Tensor distribution(const at::Tensor& logits) const;

  private:
    SamplingOptions options_;
    at::Generator generator_;
};

}  // namespace moelab::core

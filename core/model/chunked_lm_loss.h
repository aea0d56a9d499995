#pragma once

// The LM head and the next-token cross-entropy together, a chunk of rows at a time.
//
// Note [Chunked LM loss]
// The plain path holds the (tokens, vocab) logits of a step, their log-softmax, and in the
// backward their gradient: three tensors of tokens x vocab floats (at the wide shape, 4096 x 8192:
// 128 MiB each), each written and read by passes over the whole. Here each chunk's logits are
// turned into its loss and, when a gradient is wanted, into the gradient of its logits (softmax
// minus one-hot) at once, and the gradients of the hidden states and of the head's weight are
// accumulated from the chunk before it is dropped; the backward only scales them by the upstream
// gradient. Same products, same loss; only the order in which the weight's gradient is summed
// over rows differs (chunk by chunk).

#include <cstdint>

#include <ATen/ATen.h>

namespace moelab::core {

inline constexpr std::int64_t kIgnoredTarget = -100;  // as at::cross_entropy_loss's ignore_index

// hidden: (tokens, d_model) float32; weight: (vocab, d_model) float32, the LM head (the tied
// embedding or the head); targets: (tokens,) int64, kIgnoredTarget where nothing is counted.
// The summed or mean cross-entropy of softmax(hidden weight^T) over the counted targets, as
// at::cross_entropy_loss gives (NaN for the mean of none); differentiable in hidden and weight.
at::Tensor chunked_lm_loss(const at::Tensor& hidden, const at::Tensor& weight,
                           const at::Tensor& targets, bool sum, std::int64_t chunk_rows = 512);

}  // namespace moelab::core

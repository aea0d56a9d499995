#pragma once

// Multi-head causal self-attention with rotary position embeddings and optional grouped-query
// attention (fewer key/value heads than query heads, each shared by a group of query heads).
// Decodes incrementally with sdk::KeyValueCache.

#include <cstdint>
#include <memory>

#include "moelab/sdk/attention.h"

namespace moelab::plugins::rope {

class RopeAttention : public sdk::Attention {
  public:
    RopeAttention(const sdk::AttentionContext& context, double base);

    at::Tensor forward(const sdk::AttentionInput& input) override;
    std::unique_ptr<sdk::AttentionCache> make_cache(std::int64_t batch,
                                                    std::int64_t max_len) override;
    sdk::AttentionCost cost(std::int64_t context) const override;

  private:
    std::int64_t d_model_;
    std::int64_t heads_;
    std::int64_t kv_heads_;
    std::int64_t head_dim_;
    at::Tensor w_query_;   // (heads * head_dim, d_model)
    at::Tensor w_key_;     // (kv_heads * head_dim, d_model)
    at::Tensor w_value_;   // (kv_heads * head_dim, d_model)
    at::Tensor w_output_;  // (d_model, heads * head_dim)
    at::Tensor inv_freq_;  // (1, head_dim / 2) float64 buffer
};

}  // namespace moelab::plugins::rope

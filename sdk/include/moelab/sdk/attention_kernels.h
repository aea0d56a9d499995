#pragma once

// Since 5.6. Fused attention operators that the host offers to attention plugins
// (AttentionContext::kernels): compiled into the host with its kernels, its threads and its BLAS,
// which a plugin cannot reach on its own. Each operator returns an undefined tensor for inputs it
// has no kernel for (another device or dtype), and the plugin then computes the same thing itself,
// so a plugin uses them without depending on where it runs.

#include <ATen/core/Tensor.h>

namespace moelab::sdk {

class AttentionKernels {
  public:
    // softmax_{j <= i}(scale q_i . k_j) v_j over whole sequences, the contract of
    // blocked_causal_attention (blocked_attention.h): query (n, group, seq, head_dim), the group of
    // query heads of each key/value head; key (n, seq, head_dim); value (n, seq, value_dim);
    // query i attends keys 0..i of its own block (consecutive positions, no cache, no padding).
    // Returns (n, group, seq, value_dim), differentiable in all three, or an undefined tensor.
    virtual at::Tensor causal_attention(const at::Tensor& query, const at::Tensor& key,
                                        const at::Tensor& value, double scale) const = 0;

  protected:
    ~AttentionKernels() = default;
};

}  // namespace moelab::sdk

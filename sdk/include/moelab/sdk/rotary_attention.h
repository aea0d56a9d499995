#pragma once

// Since 5.1. Causal multi-head self-attention with rotary position embeddings (rotary.h): one set
// of frequencies for every head (RoPE) or one per key/value head (HARPE, methods.md §5), optional
// grouped-query attention, cached decoding through KeyValueCache. The built-in `rope` and `harpe`
// plugins are this class with their own frequencies; a plugin with another rotary scheme can be
// too.
//
// The frequencies are not a buffer: they are a function of the plugin's options, so a checkpoint
// does not carry them and a run started from another run's weights (init.from) with other options
// (a larger base, bases per head, interpolated positions) uses its own.
//
// Since 5.6, whole sequences run on the host's fused causal attention (AttentionContext::kernels)
// where it has one for the tensors.

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "moelab/sdk/attention.h"
#include "moelab/sdk/blocked_attention.h"
#include "moelab/sdk/causal_mask.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/fused_rotary.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/key_value_cache.h"
#include "moelab/sdk/rotary.h"
#include "moelab/sdk/rotary_heads.h"

namespace moelab::sdk {

// Whether a model's shape suits RotaryAttention: an even head dimension (coordinates rotate in
// pairs) and key/value heads that divide the query heads. For a component's `supports`.
inline Support rotary_attention_fits(const CapabilityQuery& query) {
    if (query.model.head_dim % 2 != 0) {
        return Support::no("rotary embeddings need an even head dimension (d_model / heads), got " +
                           std::to_string(query.model.head_dim));
    }
    if (query.model.kv_heads > 0 && query.model.heads % query.model.kv_heads != 0) {
        return Support::no("kv_heads must divide heads");
    }
    return Support::yes();
}

class RotaryAttention : public Attention {
  public:
    // inv_freq: (1 or kv_heads, head_dim / 2). With kv_heads rows, key/value head g and the query
    // heads of its group (g * heads / kv_heads onwards) rotate with row g.
    RotaryAttention(const AttentionContext& context, const at::Tensor& inv_freq)
        : d_model_(context.model.d_model),
          heads_(context.model.heads),
          kv_heads_(context.model.kv_heads),
          head_dim_(context.model.head_dim),
          inv_freq_(inv_freq.to(at::kDouble).contiguous()),
          kernels_(context.kernels) {
        if (inv_freq_.dim() != 2 || inv_freq_.size(1) != head_dim_ / 2 ||
            (inv_freq_.size(0) != 1 && inv_freq_.size(0) != kv_heads_)) {
            throw Error("rotary attention: frequencies of shape (1 or " +
                        std::to_string(kv_heads_) + ", " + std::to_string(head_dim_ / 2) +
                        ") expected");
        }
        at::Generator generator = make_generator(context.seed);
        const double std = context.init_std;
        const double out_std = residual_init_std(std, context.model.layers);
        w_query_ = register_parameter(
            "w_query", normal_weight({heads_ * head_dim_, d_model_}, std, generator));
        w_key_ = register_parameter(
            "w_key", normal_weight({kv_heads_ * head_dim_, d_model_}, std, generator));
        w_value_ = register_parameter(
            "w_value", normal_weight({kv_heads_ * head_dim_, d_model_}, std, generator));
        w_output_ = register_parameter(
            "w_output", normal_weight({d_model_, heads_ * head_dim_}, out_std, generator));
    }

    // (1 or kv_heads, head_dim / 2) float64 on the CPU.
    const at::Tensor& inv_freq() const { return inv_freq_; }

    at::Tensor forward(const AttentionInput& input) override {
        const at::Tensor& x = input.hidden;  // (batch, seq, d_model)
        const std::int64_t batch = x.size(0);
        const std::int64_t seq = x.size(1);
        const std::int64_t group = heads_ / kv_heads_;
        const RotaryHeads rotated =
            rotary_heads(input, w_query_, w_key_, w_value_, inv_freq_on(x.device()), heads_,
                         kv_heads_, head_dim_);
        const at::Tensor& query = rotated.query;  // (b, h, s, hd)
        const at::Tensor& key = rotated.key;      // (b, kv, keys, hd)
        const at::Tensor& value = rotated.value;

        // Grouped-query attention without copying keys or values per query head: a key/value
        // head's group of query heads is one block of group * seq rows multiplied by its keys.
        const std::int64_t blocks = batch * kv_heads_;
        const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
        // Whole sequences (training, full-sequence evaluation) go to the host's fused kernel where
        // it has one, else long ones block by block. Their positions are read only where that is
        // free (on the CPU; elsewhere it would wait for the device).
        const bool whole_sequences = input.cache == nullptr && input.positions.device().is_cpu() &&
                                     consecutive_from_zero_or_more(input.positions);
        // The same rows on every path: per key/value head, its query heads' (group, seq,
        // head_dim).
        at::Tensor per_head;
        if (whole_sequences && kernels_ != nullptr) {
            per_head = kernels_->causal_attention(query.reshape({blocks, group, seq, head_dim_}),
                                                  key.reshape({blocks, seq, head_dim_}),
                                                  value.reshape({blocks, seq, head_dim_}), scale);
        }
        if (!per_head.defined()) {
            const bool blocked = whole_sequences && seq > kBlockRows && x.device().is_cpu() &&
                                 x.scalar_type() == at::kFloat;
            per_head =
                blocked
                    ? blocked_causal_attention(query.reshape({blocks, group, seq, head_dim_}),
                                               key.reshape({blocks, seq, head_dim_}),
                                               value.reshape({blocks, seq, head_dim_}), scale,
                                               kBlockRows)
                    : at::bmm(causal_probabilities(query.reshape({blocks, group * seq, head_dim_}),
                                                   key, input.positions, rotated.key_positions,
                                                   scale, value.scalar_type()),
                              value.reshape({blocks, key.size(2), head_dim_}));
        }
        const at::Tensor mixed = per_head.view({batch, heads_, seq, head_dim_})
                                     .transpose(1, 2)
                                     .reshape({batch, seq, heads_ * head_dim_});
        return at::linear(mixed, w_output_);
    }

    std::unique_ptr<AttentionCache> make_cache(std::int64_t batch, std::int64_t max_len) override {
        return std::make_unique<KeyValueCache>(batch, kv_heads_, max_len, head_dim_, head_dim_,
                                               w_key_.device());
    }

    AttentionCost cost(std::int64_t context) const override {
        // Projections: query and output d_model x heads*head_dim each, key and value
        // d_model x kv_heads*head_dim each; then q.k and p.v over `context` keys for every head.
        const double d = static_cast<double>(d_model_);
        const double q = static_cast<double>(heads_ * head_dim_);
        const double kv = static_cast<double>(kv_heads_ * head_dim_);
        AttentionCost cost;
        cost.flops_per_token =
            2.0 * d * (2.0 * q + 2.0 * kv) + 4.0 * q * static_cast<double>(context);
        return cost;
    }

  private:
    // Sequences longer than this attend block by block (blocked_attention.h); shorter ones in one
    // product, whose (seq, seq) scores are small.
    static constexpr std::int64_t kBlockRows = 256;

    // One row of positions shared by the batch, 0 or more and rising by 1: every query attends
    // exactly the keys before it in the same sequence, as the blocked path assumes.
    static bool consecutive_from_zero_or_more(const at::Tensor& positions) {
        if (positions.dim() != 2 || positions.size(0) != 1) return false;
        const at::Tensor row = positions.select(0, 0);
        if (row.size(0) < 2) return false;
        return row[0].item<std::int64_t>() >= 0 &&
               (row.narrow(0, 1, row.size(0) - 1) - row.narrow(0, 0, row.size(0) - 1))
                   .eq(1)
                   .all()
                   .item<bool>();
    }

    // The frequencies on `device`, copied there once (they are not module state, so the model's
    // to(device) does not move them).
    const at::Tensor& inv_freq_on(const at::Device& device) {
        if (inv_freq_.device() == device) return inv_freq_;
        if (!device_inv_freq_.defined() || device_inv_freq_.device() != device) {
            device_inv_freq_ = inv_freq_.to(device);
        }
        return device_inv_freq_;
    }

    std::int64_t d_model_;
    std::int64_t heads_;
    std::int64_t kv_heads_;
    std::int64_t head_dim_;
    at::Tensor w_query_;   // (heads * head_dim, d_model)
    at::Tensor w_key_;     // (kv_heads * head_dim, d_model)
    at::Tensor w_value_;   // (kv_heads * head_dim, d_model)
    at::Tensor w_output_;  // (d_model, heads * head_dim)
    at::Tensor inv_freq_;  // (1 or kv_heads, head_dim / 2) float64, CPU
    at::Tensor device_inv_freq_;
    // Members are only ever appended: the host reads a plugin's RotaryAttention through
    // dynamic_cast (hugging_face_export.cpp), so the layout of older members is part of ABI 5.
    const AttentionKernels* kernels_;  // the host's, or null (since 5.6)
};

}  // namespace moelab::sdk

#pragma once

// Since 5.5. The steps of RotaryAttention (rotary_attention.h) that other rotary attentions share,
// such as UniAttn's anchor layers, which hand their softmax to the layers after them: the rotated
// query, key and value heads of one input (appended to its KeyValueCache when it has one), and
// the causal softmax of grouped queries against their keys.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "moelab/sdk/attention.h"
#include "moelab/sdk/causal_mask.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/fused_rotary.h"
#include "moelab/sdk/key_value_cache.h"
#include "moelab/sdk/rotary.h"

namespace moelab::sdk {

struct RotaryHeads {
    at::Tensor query;          // (batch, heads, seq, head_dim), rotated, head-major
    at::Tensor key;            // (batch, kv_heads, keys, head_dim), rotated; keys = cached + seq
    at::Tensor value;          // (batch, kv_heads, keys, head_dim)
    at::Tensor key_positions;  // (batch or 1, keys) int64, negative for padding slots
};

// The heads of `input.hidden` (batch, seq, d_model) for the projections w_query (heads * head_dim,
// d_model), w_key and w_value (kv_heads * head_dim, d_model), rotated by `inv_freq` (1 or
// kv_heads rows, on the input's device; query head h rotates with the row of its key/value head).
// With a cache (which must be a KeyValueCache) the new keys and values are appended and the heads
// are views of everything it holds.
inline RotaryHeads rotary_heads(const AttentionInput& input, const at::Tensor& w_query,
                                const at::Tensor& w_key, const at::Tensor& w_value,
                                const at::Tensor& inv_freq, std::int64_t heads,
                                std::int64_t kv_heads, std::int64_t head_dim) {
    const at::Tensor& x = input.hidden;
    const std::int64_t batch = x.size(0);
    const std::int64_t seq = x.size(1);
    const std::int64_t query_width = heads * head_dim;
    const std::int64_t kv_width = kv_heads * head_dim;
    // One product for queries, keys and values: the weights side by side (a copy of the weights,
    // small beside the activations), then views per head. One wide product runs closer to the
    // machine's GEMM peak than three narrow ones, and the gradient of x is one product instead
    // of three and two sums. One split, not three narrows: the backward of a narrow writes a
    // zero tensor of the whole product's size and the three are summed (at the wide shape 5
    // passes over 25 MB per layer, one thread), where the split's backward concatenates the
    // three gradients once. The same values either way (the sums only added zeros).
    const at::Tensor qkv = at::linear(x, at::cat({w_query, w_key, w_value}));
    const std::vector<at::Tensor> parts =
        at::split_with_sizes(qkv, {query_width, kv_width, kv_width}, -1);
    auto heads_of = [&](std::int64_t part, std::int64_t count) {
        return parts[static_cast<std::size_t>(part)].view({batch, seq, count, head_dim});
    };
    // cos, sin: (batch, 1 or kv_heads, seq, head_dim/2).
    const auto [cos, sin] = rope_tables(inv_freq, input.positions);
    RotaryHeads out;
    out.query = rotate_heads(heads_of(0, heads), cos, sin, heads / kv_heads);
    out.key = rotate_heads(heads_of(1, kv_heads), cos, sin);
    out.value = heads_of(2, kv_heads).transpose(1, 2);
    out.key_positions = input.positions;
    if (input.cache != nullptr) {
        auto* cache = dynamic_cast<KeyValueCache*>(input.cache);
        if (cache == nullptr) throw Error("rotary attention was given another plugin's cache");
        // Attention reads views of the filled part of the preallocated cache: no concatenation.
        const KeyValueCache::Filled filled = cache->append(out.key, out.value, input.positions);
        out.key = filled.keys;
        out.value = filled.values;
        out.key_positions = filled.positions;
    }
    return out;
}

// softmax(q k^T * scale + causal bias) for `grouped` (batch * kv_heads, group * seq, head_dim):
// each key/value head's group of query heads as one block of rows, queries at `positions` (batch
// or 1, seq), against `key` (batch, kv_heads, keys, head_dim) at `key_positions` (batch or 1,
// keys). The mask is an additive bias and the scale the product's alpha, both inside the one
// product (no separate passes over the scores); the softmax runs in float32. Returns (batch *
// kv_heads, group * seq, keys) in `value_dtype`, i.e. (batch, heads, seq, keys) head-major once
// viewed so.
inline at::Tensor causal_probabilities(const at::Tensor& grouped, const at::Tensor& key,
                                       const at::Tensor& positions, const at::Tensor& key_positions,
                                       double scale, at::ScalarType value_dtype) {
    const std::int64_t blocks = grouped.size(0), rows = grouped.size(1);
    const std::int64_t batch = key.size(0), kv_heads = key.size(1), keys = key.size(2);
    const std::int64_t group = rows / positions.size(1);
    at::Tensor bias = causal_bias(positions, key_positions);  // (1 or b, 1, s, keys)
    if (group > 1) bias = bias.repeat({1, 1, group, 1});      // rows (g, s)
    bias = bias.size(0) == 1
               ? bias.view({1, rows, keys})
               : bias.expand({batch, kv_heads, rows, keys}).reshape({blocks, rows, keys});
    const at::Tensor scores = at::baddbmm(bias.to(grouped.scalar_type()), grouped,
                                          key.reshape({blocks, keys, key.size(3)}).transpose(1, 2),
                                          /*beta=*/1.0, /*alpha=*/scale);
    return scores.to(at::kFloat).softmax(-1).to(value_dtype);
}

}  // namespace moelab::sdk

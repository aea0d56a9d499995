#pragma once

// The causal mask by positions (Note [Positions and padding] in attention.h), for training,
// full-sequence evaluation and cached decoding alike.

#include <limits>

#include <ATen/ATen.h>

namespace moelab::sdk {

// query_positions: (batch, queries); key_positions: (batch, keys), int64, negative for padding.
// Returns (batch, 1, queries, keys) bool: true where the query may attend to the key, that is
// 0 <= key position <= query position. Broadcasts over heads.
inline at::Tensor causal_mask(const at::Tensor& query_positions, const at::Tensor& key_positions) {
    const at::Tensor query = query_positions.unsqueeze(1).unsqueeze(-1);  // (batch, 1, queries, 1)
    const at::Tensor key = key_positions.unsqueeze(1).unsqueeze(2);       // (batch, 1, 1, keys)
    return key.ge(0).logical_and(key.le(query));
}

// Softmax over the last dimension of fp32 `scores` where `allowed` (causal_mask) holds. Masked
// scores get the lowest finite float rather than -inf, so a query with no key to attend to (a
// padding slot) gets finite weights instead of NaN, which would spread through the value products
// of every other row.
inline at::Tensor masked_softmax(const at::Tensor& scores, const at::Tensor& allowed) {
    return scores.masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest())
        .softmax(-1);
}

// Since 5.4. The score given to a key a query may not attend to, in causal_bias. Far below any
// score, so its exponent is 0 beside any allowed key; finite in bfloat16 too (the lowest float
// rounds to -inf there), so a row with no key to attend to gets equal finite weights, as with
// masked_softmax.
inline constexpr float kMaskedScore = -1e30f;

// Since 5.4. causal_mask as an additive float32 bias: 0 where the query may attend to the key,
// kMaskedScore elsewhere; (batch, 1, queries, keys). Added to the scores inside their product
// (at::baddbmm), it saves the passes of a separate masked_fill forward and backward.
inline at::Tensor causal_bias(const at::Tensor& query_positions, const at::Tensor& key_positions) {
    const at::Tensor allowed = causal_mask(query_positions, key_positions);
    return at::zeros(allowed.sizes(), allowed.options().dtype(at::kFloat))
        .masked_fill(allowed.logical_not(), kMaskedScore);
}

}  // namespace moelab::sdk

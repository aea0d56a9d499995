#pragma once

// Rotary position embeddings (Su et al., RoFormer) with one base per model or one per head (HARPE).
// Pairing is "rotate half": coordinate i rotates with i + head_dim/2, as in LLaMA.

#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

namespace moelab::sdk {

// (head_dim/2,) float64: base^(-2i/head_dim) for i = 0 .. head_dim/2 - 1.
inline at::Tensor rope_inv_freq(double base, std::int64_t head_dim) {
    const at::Tensor i = at::arange(0, head_dim / 2, at::TensorOptions().dtype(at::kDouble));
    return at::pow(base, -2.0 * i / static_cast<double>(head_dim));
}

// inv_freq: (bases, head_dim/2), one row per head or a single row shared by all heads.
// positions: (batch, seq) int64 (a (seq,) tensor counts as one row); negative positions (padding,
// Note [Positions and padding]) get the tables of position 0. Returns cos and sin tables, each
// (batch, bases, seq, head_dim/2) float32. Angles are formed in float64 so that large bases and
// long positions keep their precision.
inline std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& inv_freq,
                                                     const at::Tensor& positions) {
    const at::Tensor rows = positions.dim() == 1 ? positions.unsqueeze(0) : positions;
    const at::Tensor angles = rows.clamp_min(0).to(at::kDouble).view({rows.size(0), 1, -1, 1}) *
                              inv_freq.to(at::kDouble).unsqueeze(1).unsqueeze(0);
    return {angles.cos().to(at::kFloat), angles.sin().to(at::kFloat)};
}

// x: (batch, heads, seq, head_dim); cos, sin: (batch or 1, heads or 1, seq, head_dim/2). Same
// dtype as x out.
inline at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    const std::int64_t half = x.size(-1) / 2;
    const at::Tensor c = cos.to(x.scalar_type());
    const at::Tensor s = sin.to(x.scalar_type());
    const at::Tensor x1 = x.narrow(-1, 0, half);
    const at::Tensor x2 = x.narrow(-1, half, half);
    return at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}

}  // namespace moelab::sdk

#pragma once

// Since 5.4. Rotary embeddings applied in one pass over the projection's own layout, forward and
// backward: the same rotation as apply_rope (rotary.h), without its chain of narrow, multiply,
// subtract and concatenate (seven passes over the tensor, and as many in the backward). On the
// CPU in float32 this is a loop over rows; elsewhere (CUDA, bfloat16) it is apply_rope.
//
// x: (batch, seq, heads, head_dim), the output of a projection viewed per head (the last dimension
// contiguous; the others may be strided, as in a slice of a fused query/key/value projection).
// cos, sin: (1 or batch, rows, seq, head_dim/2) float32 from rope_tables, with `rows` 1 (every head
// rotates alike) or heads / heads_per_row (head h rotates with row h / heads_per_row: HARPE's
// per-key/value-head bases for query heads grouped under grouped-query attention).
// Returns (batch, heads, seq, head_dim), contiguous: the layout attention's products read, written
// by the same pass. Since 5.6.1 the row loop is vector code in release builds too (vectorize.h).

#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include "moelab/sdk/error.h"
#include "moelab/sdk/rotary.h"
#include "moelab/sdk/vectorize.h"

namespace moelab::sdk {

namespace detail {

// Element strides of a (batch, seq, heads, head_dim) view whose last dimension is contiguous.
struct RowStrides {
    std::int64_t batch, seq, head;
};

// One row: (y1, y2) = (x1 c - x2 s, x2 c + x1 s) over half elements, s = sign * sin.
MOELAB_SDK_VECTORIZE inline void rotate_row(const float* __restrict x1, const float* __restrict x2,
                                            const float* __restrict c, const float* __restrict n,
                                            float sign, float* __restrict y1, float* __restrict y2,
                                            std::int64_t half) {
    for (std::int64_t i = 0; i < half; ++i) {
        const float si = sign * n[i];
        y1[i] = x1[i] * c[i] - x2[i] * si;
        y2[i] = x2[i] * c[i] + x1[i] * si;
    }
}

// The rotation by +angle (forward) or -angle (the backward: a rotation's transpose), from `in`
// rows to `out` rows, each (batch, seq, head) row of head_dim floats.
inline void rotate_rows(const float* in, RowStrides in_strides, float* out, RowStrides out_strides,
                        std::int64_t batch, std::int64_t seq, std::int64_t heads,
                        std::int64_t head_dim, const at::Tensor& cos, const at::Tensor& sin,
                        std::int64_t heads_per_row, bool inverse) {
    const std::int64_t half = head_dim / 2;
    const std::int64_t table_b = cos.size(0) == 1 ? 0 : cos.stride(0);
    const std::int64_t table_r = cos.size(1) == 1 ? 0 : cos.stride(1);
    const std::int64_t table_s = cos.stride(2);
    const float* c_base = cos.data_ptr<float>();
    const float* s_base = sin.data_ptr<float>();
    const float sign = inverse ? -1.0f : 1.0f;
    at::parallel_for(0, batch * seq, 16, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t row = begin; row < end; ++row) {
            const std::int64_t b = row / seq, s = row % seq;
            for (std::int64_t h = 0; h < heads; ++h) {
                const std::int64_t table =
                    b * table_b + (h / heads_per_row) * table_r + s * table_s;
                const float* c = c_base + table;
                const float* n = s_base + table;
                const float* x1 =
                    in + b * in_strides.batch + s * in_strides.seq + h * in_strides.head;
                float* y1 =
                    out + b * out_strides.batch + s * out_strides.seq + h * out_strides.head;
                rotate_row(x1, x1 + half, c, n, sign, y1, y1 + half, half);
            }
        }
    });
}

struct FusedRotary : torch::autograd::Function<FusedRotary> {
    // x: (batch, seq, heads, head_dim) with a contiguous last dimension; returns (batch, heads,
    // seq, head_dim) contiguous.
    static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& x,
                              const at::Tensor& cos, const at::Tensor& sin,
                              std::int64_t heads_per_row) {
        context->save_for_backward({cos, sin});
        context->saved_data["heads_per_row"] = heads_per_row;
        const std::int64_t batch = x.size(0), seq = x.size(1), heads = x.size(2);
        const std::int64_t head_dim = x.size(3);
        at::Tensor out = at::empty({batch, heads, seq, head_dim}, x.options());
        rotate_rows(x.data_ptr<float>(), {x.stride(0), x.stride(1), x.stride(2)},
                    out.data_ptr<float>(), {heads * seq * head_dim, head_dim, seq * head_dim},
                    batch, seq, heads, head_dim, cos, sin, heads_per_row, /*inverse=*/false);
        return out;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                   torch::autograd::variable_list grads) {
        const auto saved = context->get_saved_variables();
        const at::Tensor grad = grads[0].contiguous();  // (batch, heads, seq, head_dim)
        const std::int64_t batch = grad.size(0), heads = grad.size(1), seq = grad.size(2);
        const std::int64_t head_dim = grad.size(3);
        at::Tensor grad_x = at::empty({batch, seq, heads, head_dim}, grad.options());
        rotate_rows(grad.data_ptr<float>(), {grad.stride(0), grad.stride(2), grad.stride(1)},
                    grad_x.data_ptr<float>(), {seq * heads * head_dim, heads * head_dim, head_dim},
                    batch, seq, heads, head_dim, saved[0], saved[1],
                    context->saved_data["heads_per_row"].toInt(), /*inverse=*/true);
        return {grad_x, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

}  // namespace detail

inline at::Tensor rotate_heads(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                               std::int64_t heads_per_row = 1) {
    if (x.dim() != 4 || x.size(3) % 2 != 0 || cos.dim() != 4 || cos.sizes() != sin.sizes() ||
        cos.size(3) * 2 != x.size(3) || cos.size(2) != x.size(1) ||
        (cos.size(0) != 1 && cos.size(0) != x.size(0)) || heads_per_row < 1 ||
        (cos.size(1) != 1 && cos.size(1) * heads_per_row != x.size(2))) {
        throw Error(
            "rotate_heads: x (batch, seq, heads, even head_dim) and tables (1 or batch, 1 or "
            "heads / heads_per_row, seq, head_dim / 2) expected");
    }
    const bool fused = x.device().is_cpu() && x.scalar_type() == at::kFloat &&
                       cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat &&
                       x.stride(3) == 1;
    if (!fused) {
        // The same rotation as a composition: x as (batch, rows, heads per row, seq, head_dim)
        // against tables as (1 or batch, rows, 1, seq, half).
        const std::int64_t rows = cos.size(1);
        const at::Tensor by_head = x.transpose(1, 2);  // (batch, heads, seq, head_dim)
        return apply_rope(
                   by_head.reshape({x.size(0), rows, x.size(2) / rows, x.size(1), x.size(3)}),
                   cos.unsqueeze(2), sin.unsqueeze(2))
            .view(by_head.sizes());
    }
    return detail::FusedRotary::apply(x, cos.contiguous(), sin.contiguous(), heads_per_row);
}

}  // namespace moelab::sdk

#pragma once

// Since 5.4. Causal attention over whole sequences, one block of queries at a time, forward and
// backward: memory linear in the sequence length. A block of queries meets only the keys up to
// its last position (the blocks above the diagonal are never computed), its probabilities are
// turned into its output at once, and only each query's log-sum-exp is kept; the backward
// recomputes each block's probabilities from it (the schedule of FlashAttention, in LibTorch
// products). The (seq, seq) scores of the plain path, quadratic in the sequence and saved for the
// backward in every layer, are never held: at most (block, seq) per block and key/value head.
//
// query: (n, group, seq, head_dim), the query heads of one key/value head as its group; key:
// (n, seq, head_dim); value: (n, seq, value_dim); query i attends keys 0..i of its own sequence
// (training and full-sequence evaluation: no cache, no padding). `scale` multiplies q.k.
// Returns (n, group, seq, value_dim). The softmax is computed in float32.

#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "moelab/sdk/causal_mask.h"
#include "moelab/sdk/error.h"

namespace moelab::sdk {

namespace detail {

// (1, group * rows, keys) float32: 0 where key j <= first + r for row r of each group, else
// kMaskedScore.
inline at::Tensor block_causal_bias(std::int64_t first, std::int64_t rows, std::int64_t keys,
                                    std::int64_t group, const at::TensorOptions& options) {
    const at::Tensor query = at::arange(first, first + rows, options.dtype(at::kLong)).unsqueeze(1);
    const at::Tensor key = at::arange(0, keys, options.dtype(at::kLong)).unsqueeze(0);
    const at::Tensor bias =
        at::zeros({rows, keys}, options.dtype(at::kFloat)).masked_fill(key.gt(query), kMaskedScore);
    return bias.repeat({group, 1}).unsqueeze(0);
}

struct BlockedCausalAttention : torch::autograd::Function<BlockedCausalAttention> {
    struct Block {
        std::int64_t first, rows;
    };

    // The block's scores (n, group * rows, keys up to its last query), float32.
    static at::Tensor scores(const at::Tensor& query_rows, const at::Tensor& key, Block block,
                             std::int64_t group, double scale) {
        const std::int64_t keys = block.first + block.rows;
        const at::Tensor bias =
            block_causal_bias(block.first, block.rows, keys, group, query_rows.options());
        return at::baddbmm(bias.to(query_rows.scalar_type()), query_rows,
                           key.narrow(1, 0, keys).transpose(1, 2), /*beta=*/1.0, scale)
            .to(at::kFloat);
    }

    // (n, group * rows, dim) rows of a (n, group, seq, dim) tensor.
    static at::Tensor rows_of(const at::Tensor& t, Block block) {
        return t.narrow(2, block.first, block.rows)
            .reshape({t.size(0), t.size(1) * block.rows, t.size(3)});
    }

    static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& query,
                              const at::Tensor& key, const at::Tensor& value, double scale,
                              std::int64_t block_rows) {
        const std::int64_t n = query.size(0), group = query.size(1), seq = query.size(2);
        at::Tensor out = at::empty({n, group, seq, value.size(2)}, value.options());
        at::Tensor lse = at::empty({n, group, seq}, query.options().dtype(at::kFloat));
        for (std::int64_t first = 0; first < seq; first += block_rows) {
            const Block block{first, std::min(block_rows, seq - first)};
            const std::int64_t keys = block.first + block.rows;
            const at::Tensor s = scores(rows_of(query, block), key, block, group, scale);
            const at::Tensor log_sum = s.logsumexp(-1, /*keepdim=*/true);  // (n, g * rows, 1)
            const at::Tensor probs = s.sub_(log_sum).exp_().to(value.scalar_type());
            out.narrow(2, block.first, block.rows)
                .copy_(at::bmm(probs, value.narrow(1, 0, keys))
                           .view({n, group, block.rows, value.size(2)}));
            lse.narrow(2, block.first, block.rows).copy_(log_sum.view({n, group, block.rows}));
        }
        context->save_for_backward({query, key, value, out, lse});
        context->saved_data["scale"] = scale;
        context->saved_data["block_rows"] = block_rows;
        return out;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                   torch::autograd::variable_list grads) {
        const auto saved = context->get_saved_variables();
        const at::Tensor &query = saved[0], &key = saved[1], &value = saved[2];
        const at::Tensor &out = saved[3], &lse = saved[4];
        const double scale = context->saved_data["scale"].toDouble();
        const std::int64_t block_rows = context->saved_data["block_rows"].toInt();
        const at::Tensor grad_out = grads[0];
        const std::int64_t n = query.size(0), group = query.size(1), seq = query.size(2);
        at::Tensor grad_query = at::empty_like(query, at::MemoryFormat::Contiguous);
        at::Tensor grad_key = at::zeros_like(key, at::MemoryFormat::Contiguous);
        at::Tensor grad_value = at::zeros_like(value, at::MemoryFormat::Contiguous);
        for (std::int64_t first = 0; first < seq; first += block_rows) {
            const Block block{first, std::min(block_rows, seq - first)};
            const std::int64_t keys = block.first + block.rows;
            const at::Tensor query_rows = rows_of(query, block);  // (n, g * rows, d)
            const at::Tensor keys_seen = key.narrow(1, 0, keys);
            const at::Tensor values_seen = value.narrow(1, 0, keys);
            const at::Tensor block_lse =
                lse.narrow(2, block.first, block.rows).reshape({n, group * block.rows, 1});
            const at::Tensor probs = scores(query_rows, key, block, group, scale)
                                         .sub_(block_lse)
                                         .exp_();  // (n, g * rows, keys) float32
            const at::Tensor grad_rows = rows_of(grad_out, block).to(at::kFloat);
            const at::Tensor out_rows = rows_of(out, block).to(at::kFloat);
            grad_value.narrow(1, 0, keys)
                .add_(at::bmm(probs.transpose(1, 2), grad_rows).to(value.scalar_type()));
            // d(score) = p * (d(p) - sum_j p_j d(p_j)); sum_j p_j d(p_j) = grad_out . out.
            at::Tensor grad_scores = at::bmm(grad_rows, values_seen.to(at::kFloat).transpose(1, 2));
            grad_scores.sub_((grad_rows * out_rows).sum(-1, /*keepdim=*/true)).mul_(probs);
            grad_scores = grad_scores.to(query.scalar_type());
            grad_query.narrow(2, block.first, block.rows)
                .copy_(at::bmm(grad_scores, keys_seen)
                           .mul_(scale)
                           .view({n, group, block.rows, query.size(3)}));
            grad_key.narrow(1, 0, keys)
                .add_(at::bmm(grad_scores.transpose(1, 2), query_rows).mul_(scale));
        }
        return {grad_query, grad_key, grad_value, at::Tensor(), at::Tensor()};
    }
};

}  // namespace detail

inline at::Tensor blocked_causal_attention(const at::Tensor& query, const at::Tensor& key,
                                           const at::Tensor& value, double scale,
                                           std::int64_t block_rows = 256) {
    if (query.dim() != 4 || key.dim() != 3 || value.dim() != 3 || key.size(0) != query.size(0) ||
        value.size(0) != query.size(0) || key.size(1) != query.size(2) ||
        value.size(1) != query.size(2) || key.size(2) != query.size(3) || block_rows < 1) {
        throw Error(
            "blocked_causal_attention: query (n, group, seq, d), key (n, seq, d), value (n, seq, "
            "dv) and a positive block expected");
    }
    return detail::BlockedCausalAttention::apply(query, key, value, scale, block_rows);
}

}  // namespace moelab::sdk

#pragma once

// The oracle for the expert bank: a per-token, per-slot loop with the dispatch policy written out
// the obvious way. Slow and simple on purpose.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>

namespace moelab::tests {

// RMSNorm written out, epsilon 1e-5 on the mean square (the default of every recipe).
inline at::Tensor naive_rms_norm(const at::Tensor& x, const at::Tensor& weight) {
    return x * at::rsqrt(x.square().mean(-1, true) + 1e-5) * weight;
}

inline at::Tensor naive_swiglu(const at::Tensor& x, const at::Tensor& w_in, const at::Tensor& w_out) {
    const std::int64_t d_ff = w_out.size(0);
    const at::Tensor pre = at::matmul(x, w_in);
    return at::matmul(at::silu(pre.narrow(-1, 0, d_ff)) * pre.narrow(-1, d_ff, d_ff), w_out);
}

// Which (token, slot) assignments survive a capacity of ceil(factor * assignments / experts),
// keeping per expert the highest weights (ties: earlier token, then earlier slot) or the earliest.
inline std::vector<std::vector<bool>> naive_kept(const at::Tensor& indices, const at::Tensor& weights,
                                                 std::int64_t experts, double capacity_factor,
                                                 bool by_weight) {
    const std::int64_t tokens = indices.size(0), slots = indices.size(1);
    std::vector<std::vector<bool>> kept(tokens, std::vector<bool>(slots, false));
    std::int64_t assignments = 0;
    for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t s = 0; s < slots; ++s) assignments += indices[t][s].item<std::int64_t>() >= 0;
    const std::int64_t capacity =
        capacity_factor > 0 ? static_cast<std::int64_t>(std::ceil(capacity_factor * assignments / experts))
                            : assignments;
    for (std::int64_t e = 0; e < experts; ++e) {
        std::vector<std::pair<std::int64_t, std::int64_t>> mine;  // (token, slot) in token order
        for (std::int64_t t = 0; t < tokens; ++t)
            for (std::int64_t s = 0; s < slots; ++s)
                if (indices[t][s].item<std::int64_t>() == e) mine.emplace_back(t, s);
        if (by_weight && capacity_factor > 0) {
            using Slot = std::pair<std::int64_t, std::int64_t>;
            std::stable_sort(mine.begin(), mine.end(), [&](const Slot& a, const Slot& b) {
                return weights[a.first][a.second].item<double>() > weights[b.first][b.second].item<double>();
            });
        }
        for (std::size_t i = 0; i < mine.size() && static_cast<std::int64_t>(i) < capacity; ++i) {
            kept[mine[i].first][mine[i].second] = true;
        }
    }
    return kept;
}

// out[t] = sum over kept slots of weights[t, s] * expert_{indices[t, s]}(x[t])
inline at::Tensor naive_mix(const at::Tensor& x, const at::Tensor& indices, const at::Tensor& weights,
                            const at::Tensor& w_in, const at::Tensor& w_out,
                            double capacity_factor = 0, bool by_weight = true) {
    const auto kept = naive_kept(indices, weights, w_in.size(0), capacity_factor, by_weight);
    std::vector<at::Tensor> rows;
    for (std::int64_t t = 0; t < x.size(0); ++t) {
        at::Tensor row = at::zeros_like(x[t]);
        for (std::int64_t s = 0; s < indices.size(1); ++s) {
            const std::int64_t e = indices[t][s].item<std::int64_t>();
            if (e < 0 || !kept[t][s]) continue;
            row = row + weights[t][s] * naive_swiglu(x[t].unsqueeze(0), w_in[e], w_out[e]).squeeze(0);
        }
        rows.push_back(row);
    }
    return at::stack(rows);
}

}  // namespace moelab::tests

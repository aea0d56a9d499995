#pragma once

// Building blocks shared by router plugins: selection and the standard auxiliary losses. All
// functions expect float32 inputs (routing runs in fp32).

#include <algorithm>
#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

#include "moelab/sdk/batch_reduction.h"

namespace moelab::sdk {

// Top-k selection over scores (tokens, experts) >= 0: indices (tokens, k) int64 and their scores,
// renormalised to sum to one per token when `renormalize` is set. Experts with score 0 are not
// selectable (Note [Selection contract]): a token with fewer than k of them gets empty slots (-1,
// weight 0). Renormalise only for k > 1: with one expert the weight p / p = 1 is a constant and the
// router would get no gradient from the loss (the CartesianMoE authors' code does the same).
inline std::pair<at::Tensor, at::Tensor> select_top_k(const at::Tensor& scores, std::int64_t k,
                                                      bool renormalize) {
    auto [weights, indices] = scores.topk(k, /*dim=*/-1);
    const at::Tensor selectable = weights > 0;
    weights = weights * selectable;
    if (renormalize && k > 1) {
        weights = weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-9);
    }
    return {indices.masked_fill(selectable.logical_not(), -1), weights};
}

// Fraction of routed assignments per expert: (experts,) float32. Slots with index -1 are ignored.
// With `batch` (RouterInput::batch), the fraction of the whole batch's assignments, also when the
// batch is split across processes.
inline at::Tensor expert_assignment_fraction(const at::Tensor& indices, std::int64_t experts,
                                             const BatchReduction* batch = nullptr) {
    const at::Tensor chosen = indices.masked_select(indices >= 0);
    at::Tensor counts = at::bincount(chosen, /*weights=*/{}, experts).to(at::kFloat);
    if (batch != nullptr) counts = batch->sum(counts);
    return counts / counts.sum().clamp_min(1.0);
}

// Switch/GShard load-balancing loss (Fedus et al. 2021, eq. 4, generalised to k slots):
//   experts * sum_e f_e * P_e
// f_e: fraction of the routed assignments that went to expert e (not differentiable);
// P_e: mean router probability of expert e over tokens. Equals 1 under perfectly uniform routing.
// With `batch`, f_e is the whole batch's and P_e this process's part: every process holds an equal
// part of the batch, and the host averages the processes' losses (and gradients), so the mean of
// experts * sum_e f_e * P_e^(p) over processes p is the loss of the whole batch, whatever the
// number of processes.
inline at::Tensor switch_balance_loss(const at::Tensor& probs, const at::Tensor& indices,
                                      std::int64_t experts, const BatchReduction* batch = nullptr) {
    const at::Tensor fraction = expert_assignment_fraction(indices, experts, batch);
    // A process may hold no tokens of an evaluation batch (expert parallelism): no probability.
    const at::Tensor mean_prob =
        probs.size(0) > 0 ? probs.mean(0) : at::zeros({probs.size(-1)}, probs.options());
    return static_cast<double>(experts) * (fraction * mean_prob).sum();
}

// Router z-loss (Zoph et al. 2022, ST-MoE eq. 5): mean over tokens of logsumexp(logits)^2.
inline at::Tensor router_z_loss(const at::Tensor& logits) {
    if (logits.size(0) == 0) return at::zeros({}, logits.options());  // no tokens, no loss
    return logits.logsumexp(-1).square().mean();
}

}  // namespace moelab::sdk

#pragma once

// Building blocks shared by router plugins: selection and the standard auxiliary losses. All
// functions expect float32 inputs (routing runs in fp32).

#include <algorithm>
#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

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
inline at::Tensor expert_assignment_fraction(const at::Tensor& indices, std::int64_t experts) {
    const at::Tensor chosen = indices.masked_select(indices >= 0);
    const at::Tensor counts = at::bincount(chosen, /*weights=*/{}, experts).to(at::kFloat);
    return counts / std::max<std::int64_t>(1, chosen.numel());
}

// Switch/GShard load-balancing loss (Fedus et al. 2021, eq. 4, generalised to k slots):
//   experts * sum_e f_e * P_e
// f_e: fraction of the routed assignments that went to expert e (not differentiable);
// P_e: mean router probability of expert e over tokens. Equals 1 under perfectly uniform routing.
inline at::Tensor switch_balance_loss(const at::Tensor& probs, const at::Tensor& indices,
                                      std::int64_t experts) {
    const at::Tensor fraction = expert_assignment_fraction(indices, experts);
    const at::Tensor mean_prob = probs.mean(0);
    return static_cast<double>(experts) * (fraction * mean_prob).sum();
}

// Router z-loss (Zoph et al. 2022, ST-MoE eq. 5): mean over tokens of logsumexp(logits)^2.
inline at::Tensor router_z_loss(const at::Tensor& logits) {
    return logits.logsumexp(-1).square().mean();
}

}  // namespace moelab::sdk

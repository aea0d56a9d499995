#pragma once

// Building blocks shared by router plugins: selection, perturbation and the standard auxiliary
// losses. All functions expect float32 inputs (routing runs in fp32).

#include <algorithm>
#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

namespace moelab::sdk {

// Removes the `count` highest-scoring experts of every token by setting their scores to `fill`
// (-inf for logits, 0 for probabilities). Used for RoutingPerturbation. At least one expert stays,
// so that a softmax over the rest is defined.
inline at::Tensor mask_top_experts(const at::Tensor& scores, int count, double fill) {
    count = std::min<int>(count, static_cast<int>(scores.size(-1)) - 1);
    if (count <= 0) return scores;
    const at::Tensor top = std::get<1>(scores.topk(count, /*dim=*/-1));
    return scores.scatter(-1, top, fill);
}

// Top-k selection over probs (tokens, experts): indices (tokens, k) int64 and their probabilities,
// renormalised to sum to one per token when `renormalize` is set.
inline std::pair<at::Tensor, at::Tensor> select_top_k(const at::Tensor& probs, std::int64_t k,
                                                      bool renormalize) {
    auto [weights, indices] = probs.topk(k, /*dim=*/-1);
    if (renormalize) {
        weights = weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-9);
    }
    return {indices, weights};
}

// Fraction of routed assignments per expert: (experts,) float32. Slots with index -1 are ignored.
inline at::Tensor expert_assignment_fraction(const at::Tensor& indices, std::int64_t expert_count) {
    const at::Tensor chosen = indices.masked_select(indices >= 0);
    const at::Tensor counts = at::bincount(chosen, /*weights=*/{}, expert_count).to(at::kFloat);
    return counts / std::max<std::int64_t>(1, chosen.numel());
}

// Switch/GShard load-balancing loss (Fedus et al. 2021, eq. 4, generalised to k slots):
//   expert_count * sum_e f_e * P_e
// f_e: fraction of the routed assignments that went to expert e (not differentiable);
// P_e: mean router probability of expert e over tokens. Equals 1 under perfectly uniform routing.
inline at::Tensor switch_balance_loss(const at::Tensor& probs, const at::Tensor& indices,
                                      std::int64_t expert_count) {
    const at::Tensor fraction = expert_assignment_fraction(indices, expert_count);
    const at::Tensor mean_prob = probs.mean(0);
    return static_cast<double>(expert_count) * (fraction * mean_prob).sum();
}

// Router z-loss (Zoph et al. 2022, ST-MoE eq. 5): mean over tokens of logsumexp(logits)^2.
inline at::Tensor router_z_loss(const at::Tensor& logits) {
    return logits.logsumexp(-1).square().mean();
}

}  // namespace moelab::sdk

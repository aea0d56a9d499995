#pragma once

// Building blocks shared by router plugins: selection and the standard auxiliary losses. All
// functions expect float32 inputs (routing runs in fp32).

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include <ATen/ATen.h>

#include "moelab/sdk/batch_reduction.h"
#include "moelab/sdk/error.h"

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

// Sequence-level balance loss (DeepSeek-V3 report §2.1.2 "Complementary sequence-wise auxiliary
// loss"), for each sequence of T tokens:
//   experts * sum_e f_e * P_e
// f_e: fraction of the sequence's routed assignments that went to expert e (not differentiable);
// P_e: mean over the sequence's tokens of s_e / sum_j s_j, the token's scores as a distribution (a
// no-op for a softmax, the report's normalised affinities s' for sigmoid scores).
// The result is the mean over the sequences. The report writes f_e = experts / (k T) * count_e,
// the same when every token fills its k slots; dividing by the assignments actually made keeps
// the scale when slots are empty, as switch_balance_loss does. Equals 1 under uniform routing.
// scores: (sequences * sequence_length, experts), sequence after sequence (RouterInput::
// sequence_length); sequence_length 0, rows that are not whole sequences, counts the batch as one
// sequence. Needs no BatchReduction: every process holds whole sequences and the host averages the
// processes' losses.
inline at::Tensor sequence_balance_loss(const at::Tensor& scores, const at::Tensor& indices,
                                        std::int64_t experts, std::int64_t sequence_length) {
    const std::int64_t tokens = scores.size(0);
    if (tokens == 0) return at::zeros({}, scores.options());  // no tokens, no loss
    const std::int64_t length = sequence_length > 0 ? sequence_length : tokens;
    if (tokens % length != 0) {
        throw Error("sequence_balance_loss: " + std::to_string(tokens) +
                    " tokens are not whole sequences of " + std::to_string(length));
    }
    const std::int64_t sequences = tokens / length;
    const at::Tensor share = scores / scores.sum(-1, /*keepdim=*/true).clamp_min(1e-20);
    const at::Tensor mean_share = share.view({sequences, length, experts}).mean(1);
    const at::Tensor assigned = indices.ge(0).to(scores.scalar_type());
    const at::Tensor counts = at::zeros({tokens, experts}, scores.options())
                                  .scatter_add_(1, indices.clamp_min(0), assigned)
                                  .view({sequences, length, experts})
                                  .sum(1);  // (sequences, experts)
    const at::Tensor fraction = counts / counts.sum(-1, /*keepdim=*/true).clamp_min(1.0);
    return static_cast<double>(experts) * (fraction * mean_share).sum(-1).mean();
}

// Router z-loss (Zoph et al. 2022, ST-MoE eq. 5): mean over tokens of logsumexp(logits)^2.
inline at::Tensor router_z_loss(const at::Tensor& logits) {
    if (logits.size(0) == 0) return at::zeros({}, logits.options());  // no tokens, no loss
    return logits.logsumexp(-1).square().mean();
}

}  // namespace moelab::sdk

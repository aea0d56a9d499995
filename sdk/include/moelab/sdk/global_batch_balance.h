#pragma once

// Since 5.3. The global-batch balance loss (Qiu et al. 2025, "Demons in the Detail: On Implementing
// Load Balancing Loss for Training Specialized Mixture-of-Expert Models"): the Switch loss with the
// expert loads f_e counted over the whole optimizer step, every micro-batch of gradient
// accumulation and every process, instead of one micro-batch. A micro-batch of a few sequences is
// too small for balance to mean anything; the global batch lets experts specialise by domain while
// the model as a whole stays balanced.
//
// Note [Global-batch loads under accumulation]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Micro-batch m's loss is computed before micro-batches m+1.. exist, so f_e is the running load:
// the assignments of micro-batches 0..m of the step, summed over processes (as Megatron-Core's
// global auxiliary loss does). The last micro-batch sees the whole step's loads. Each call adds
// its micro-batch and returns the step's fraction so far; micro_batch 0 starts a new step.
// Outside training nothing is kept: the fraction is the batch's own (summed over processes).

#include <cstdint>

#include <ATen/ATen.h>

#include "moelab/sdk/batch_reduction.h"

namespace moelab::sdk {

class GlobalBatchBalance {
  public:
    explicit GlobalBatchBalance(std::int64_t experts) : experts_(experts) {}

    // experts * sum_e F_e * P_e, F_e: the step's running fraction of assignments of expert e
    // (Note [Global-batch loads under accumulation]), P_e: this micro-batch's mean probability of
    // e on this process. `training`, `micro_batch` and `batch` are RouterInput's fields.
    at::Tensor loss(const at::Tensor& probs, const at::Tensor& indices, bool training,
                    std::int64_t micro_batch, const BatchReduction& batch) {
        const at::Tensor fraction = step_fraction(indices, training, micro_batch, batch);
        const at::Tensor mean_prob =
            probs.size(0) > 0 ? probs.mean(0) : at::zeros({probs.size(-1)}, probs.options());
        return static_cast<double>(experts_) * (fraction * mean_prob).sum();
    }

    // (experts,) float32: the running fraction described above. Device-side: no synchronisation.
    at::Tensor step_fraction(const at::Tensor& indices, bool training, std::int64_t micro_batch,
                             const BatchReduction& batch) {
        const at::Tensor assigned = indices.ge(0).reshape({-1}).to(at::kFloat);
        const at::Tensor local = at::zeros({experts_}, assigned.options())
                                     .index_add_(0, indices.clamp_min(0).reshape({-1}), assigned);
        at::Tensor counts = batch.sum(local);
        if (training) {
            if (micro_batch == 0 || !step_counts_.defined() ||
                step_counts_.device() != counts.device()) {
                step_counts_ = at::zeros_like(counts);
            }
            step_counts_ = step_counts_ + counts;
            counts = step_counts_;
        }
        return counts / counts.sum().clamp_min(1.0);
    }

  private:
    std::int64_t experts_;
    at::Tensor step_counts_;  // (experts,): assignments of the step's micro-batches so far
};

}  // namespace moelab::sdk

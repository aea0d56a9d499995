#pragma once

// The host's implementation of sdk::ExpertBank: SwiGLU experts stored as stacked weights, a
// dispatch that permutes (token, expert) assignments so that each expert's rows are contiguous,
// a grouped SwiGLU kernel on those rows (kernels/: the recipe's [moe] kernel), and a weighted
// scatter-add back to tokens.
// Nothing loops over tokens. Dropless unless a capacity factor is set.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moelab/sdk/expert_bank.h"

namespace moelab::core {

struct DispatchPolicy {
    double capacity_factor = 0.0;     // 0: dropless
    bool keep_highest_weight = true;  // over capacity: keep the highest-weight assignments, else
                                      // the earliest tokens
    // The grouped SwiGLU kernel: "auto" or a name from kernels::grouped_swiglu_kernels().
    std::string kernel = "auto";
};

// What one mix() call did, for the routing statistics. Tensors stay on the bank's device.
struct DispatchRecord {
    at::Tensor tokens_per_expert;  // (experts,) int64: assignments processed per expert
    at::Tensor assignments;        // () int64: valid (token, expert) assignments requested
    at::Tensor dropped;            // () int64: assignments dropped for capacity
    std::int64_t tokens = 0;       // tokens in the call
    // Activation probe (bank_extension::kActivationThreshold): intermediate activations with
    // |a| > threshold, out of `probed`. Undefined and 0 when the probe is off.
    at::Tensor probed_active;  // () int64
    std::int64_t probed = 0;
};

class HostExpertBank final : public sdk::ExpertBank {
  public:
    HostExpertBank(sdk::ExpertBankSpec spec, DispatchPolicy policy, double init_std,
                   double output_init_std, std::uint64_t seed);

    const sdk::ExpertBankSpec& spec() const override { return spec_; }
    at::Tensor mix(const at::Tensor& x, const at::Tensor& indices,
                   const at::Tensor& weights) override;
    at::Tensor run_all(const at::Tensor& x) override;

    // Dispatch records since the last call, oldest first.
    std::vector<DispatchRecord> take_dispatches();
    // "auto" or a kernel name; checked against the case at the next mix().
    void set_kernel(std::string kernel) { policy_.kernel = std::move(kernel); }
    const DispatchPolicy& policy() const { return policy_; }
    // A switched-off bank contributes zeros and records nothing (robustness studies switch shared
    // banks off).
    void set_switched_off(bool off) { switched_off_ = off; }

    at::Tensor w_in;   // (experts, d_model, 2 * d_ff): [gate | up]
    at::Tensor w_out;  // (experts, d_ff, d_model)

  private:
    sdk::ExpertBankSpec spec_;
    DispatchPolicy policy_;
    std::optional<double> activation_threshold_;  // bank_extension::kActivationThreshold
    bool switched_off_ = false;
    std::vector<DispatchRecord> dispatches_;
};

}  // namespace moelab::core

#pragma once

// The host's implementation of sdk::ExpertBank: SwiGLU experts stored as stacked weights, a
// dispatch that permutes (token, expert) assignments so that each expert's rows are contiguous,
// a grouped SwiGLU kernel on those rows (kernels/: the recipe's [moe] kernel), and a weighted
// scatter-add back to tokens.
// Nothing loops over tokens. Dropless unless a capacity factor is set. Experts live in this
// process (local_expert_banks() makes them for a layer).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/moe/managed_expert_bank.h"
#include "kernels/binding/weight_casts.h"

namespace moelab::core {

struct DispatchPolicy {
    double capacity_factor = 0.0;     // 0: dropless
    bool keep_highest_weight = true;  // over capacity: keep the highest-weight assignments, else
                                      // the earliest tokens
    // The grouped SwiGLU kernel: "auto" or a name from kernels::grouped_swiglu_kernels().
    std::string kernel = "auto";
};

class HostExpertBank final : public ManagedExpertBank {
  public:
    // Expert e's weights are drawn from their own generator, seeded with mix_seed(seed, e): an
    // expert's initialisation does not depend on how many experts the bank (or a shard of it)
    // holds. W_in ~ N(0, init_std^2), W_out ~ N(0, output_init_std^2).
    HostExpertBank(sdk::ExpertBankSpec spec, DispatchPolicy policy, double init_std,
                   double output_init_std, std::uint64_t seed);

    const sdk::ExpertBankSpec& spec() const override { return spec_; }
    ExpertShard shard() const override { return {0, spec_.experts, spec_.experts}; }
    at::Tensor mix(const at::Tensor& x, const at::Tensor& indices,
                   const at::Tensor& weights) override;
    at::Tensor run_all(const at::Tensor& x) override;

    std::vector<DispatchRecord> take_dispatches() override;
    // "auto" or a kernel name; checked against the case at the next mix().
    void set_kernel(std::string kernel) { policy_.kernel = std::move(kernel); }
    const DispatchPolicy& policy() const { return policy_; }
    void set_switched_off(bool off) override { switched_off_ = off; }

    at::Tensor w_in;   // (experts, d_model, 2 * d_ff): [gate | up]
    at::Tensor w_out;  // (experts, d_ff, d_model)

  private:
    sdk::ExpertBankSpec spec_;
    DispatchPolicy policy_;
    std::optional<double> activation_threshold_;  // bank_extension::kActivationThreshold
    bool switched_off_ = false;
    std::vector<DispatchRecord> dispatches_;
    kernels::WeightCasts weight_casts_;  // the weights in a kernel's compute dtype
};

// The factory of banks whose experts all live in this process.
ExpertBankFactory local_expert_banks(DispatchPolicy policy, double init_std,
                                     double output_init_std);

}  // namespace moelab::core

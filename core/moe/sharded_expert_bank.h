#pragma once

// An expert bank whose routed experts are spread over the processes of an expert-parallel group
// (Note [Parallel layout]): this process holds experts [first, first + count) and runs them for
// every process's tokens.
//
// mix(): each process groups its (token, expert) assignments by expert, the group exchanges the
// per-expert counts (an all-gather), then the token rows (an all-to-all, differentiable: the
// backward sends the gradients back the same way). Each process runs its experts over the rows it
// received with the recipe's grouped kernel, and returns the outputs with the reverse all-to-all;
// the sender weights them and adds them to its tokens. The all-to-all takes its split sizes on
// the host, so on CUDA a call synchronises once (reading the gathered counts). Capacity is applied
// where the experts are, on the counts of the whole group: ceil(capacity_factor * assignments of
// the group / experts) rows per expert, the rows ordered by source process, then token (the order
// of the group's batch), or by weight first with keep_highest_weight, exactly as one process
// holding the whole batch would choose.
//
// Statistics: each process records the rows its own experts processed (zero elsewhere), its own
// tokens and assignments, and the drops at its experts; summed over the processes (the trainer
// does) they are the statistics of the whole batch.

#include <cstdint>
#include <memory>
#include <vector>

#include "core/dist/process_group.h"
#include "core/moe/host_expert_bank.h"
#include "kernels/binding/weight_casts.h"

namespace moelab::core {

class ShardedExpertBank final : public ManagedExpertBank {
  public:
    // `group`: the expert-parallel group; this process holds the experts of its rank in it.
    // spec.experts must be divisible by the group's size.
    ShardedExpertBank(sdk::ExpertBankSpec spec, DispatchPolicy policy, double init_std,
                      double output_init_std, std::uint64_t seed,
                      std::shared_ptr<ProcessGroup> group);

    const sdk::ExpertBankSpec& spec() const override { return spec_; }
    ExpertShard shard() const override { return {first_, count_, spec_.experts}; }
    at::Tensor mix(const at::Tensor& x, const at::Tensor& indices,
                   const at::Tensor& weights) override;
    // Refused: it needs every expert in every process (sdk::feature::kShardedExperts).
    at::Tensor run_all(const at::Tensor& x) override;
    std::vector<DispatchRecord> take_dispatches() override;
    void set_switched_off(bool off) override { switched_off_ = off; }

    at::Tensor w_in;   // (local experts, d_model, 2 * d_ff): [gate | up]
    at::Tensor w_out;  // (local experts, d_ff, d_model)

  private:
    sdk::ExpertBankSpec spec_;
    DispatchPolicy policy_;
    std::shared_ptr<ProcessGroup> group_;
    std::int64_t first_ = 0;
    std::int64_t count_ = 0;
    bool switched_off_ = false;
    std::vector<DispatchRecord> dispatches_;
    kernels::WeightCasts weight_casts_;  // the weights in a kernel's compute dtype
};

// The factory of a model whose routed banks are sharded over `group`; shared banks
// (ExpertBankSpec::shared, small and used by every token) stay whole in every process.
ExpertBankFactory sharded_expert_banks(DispatchPolicy policy, double init_std,
                                       double output_init_std, std::shared_ptr<ProcessGroup> group);

}  // namespace moelab::core

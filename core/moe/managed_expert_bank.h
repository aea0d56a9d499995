#pragma once

// The host's view of an expert bank: what plugins see (sdk::ExpertBank) plus what the host needs
// for routing statistics and robustness studies. Core holds banks through this interface and
// creates them through an ExpertBankFactory, so a bank with another implementation (experts
// sharded across processes, another kernel) slots in without touching the layers that use it.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "moelab/sdk/expert_bank.h"

namespace moelab::core {

// What one mix() or run_all() call did, for the routing statistics. Tensors stay on the bank's
// device.
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

// Which of a bank's experts this process holds: the first dimension of every parameter of the
// bank is `count`, for experts [first, first + count) of `experts`.
struct ExpertShard {
    std::int64_t first = 0;
    std::int64_t count = 0;
    std::int64_t experts = 0;
    bool whole() const { return count == experts; }
    // The size of a tensor of the whole bank, given this process's share of `local_numel`.
    std::int64_t whole_numel(std::int64_t local_numel) const {
        return whole() ? local_numel : local_numel / count * experts;
    }
};

class ManagedExpertBank : public sdk::ExpertBank {
  public:
    virtual ExpertShard shard() const = 0;
    // Dispatch records since the last call, oldest first.
    virtual std::vector<DispatchRecord> take_dispatches() = 0;
    // A switched-off bank contributes zeros and records nothing (robustness studies switch shared
    // banks off).
    virtual void set_switched_off(bool off) = 0;
};

// Makes one bank from its spec and a seed (derived per layer and bank by the caller).
using ExpertBankFactory = std::function<std::shared_ptr<ManagedExpertBank>(
    const sdk::ExpertBankSpec& spec, std::uint64_t seed)>;

}  // namespace moelab::core

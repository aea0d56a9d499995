#pragma once

// What the host offers to router and block plugins while they are being built.

#include <memory>

#include "moelab/sdk/expert_bank.h"

namespace moelab::sdk {

class HostServices {
  public:
    // A new bank on the model's device and dtype, with parameters initialised by the host's
    // documented scheme. The caller registers it as a submodule so that it is trained and saved.
    virtual std::shared_ptr<ExpertBank> make_expert_bank(const ExpertBankSpec& spec) = 0;

    // Occurrences of every token id in the training split: (vocab_size,) int64 on the CPU.
    // Computed once per run and shared; MaskMoE builds its routing mask from it.
    virtual at::Tensor training_token_counts() = 0;

  protected:
    ~HostServices() = default;
};

}  // namespace moelab::sdk

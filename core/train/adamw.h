#pragma once

// AdamW (Loshchilov & Hutter), the same update as torch.optim.AdamW: decoupled weight decay,
// bias-corrected moments, and, as there, a step count per parameter: a parameter's moments are
// created at its first update and its bias correction counts its own updates, so a parameter that
// starts training in a later stage (Note [Stages]) is corrected as at step 1. Our own rather than
// torch::optim::AdamW so that its state has names and serialises identically with every LibTorch
// version (checkpoint tensors "exp_avg/<param>", "exp_avg_sq/<param>"; the step counts in
// state.json).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/checkpoint/safetensors.h"
#include "core/dist/process_group.h"

namespace moelab::core {

struct NamedParameter {
    std::string name;
    at::Tensor tensor;
    bool decay = true;
};

struct AdamWOptions {
    double beta1 = 0.9;
    double beta2 = 0.95;
    double eps = 1e-8;
    double weight_decay = 0.1;
};

class AdamW {
  public:
    AdamW(std::vector<NamedParameter> parameters, AdamWOptions options);

    // One update with learning rate `lr` from the parameters' .grad(). A parameter without a
    // gradient (frozen, or unused by this batch) is left untouched and its step does not count.
    void step(double lr);
    void zero_grad();

    // Calls of step() so far.
    std::int64_t steps() const { return steps_; }
    // Each parameter's own count of updates, for those updated at least once (the others have no
    // state).
    std::map<std::string, std::int64_t> parameter_steps() const;
    // The moments of every parameter with state.
    std::vector<NamedTensor> state() const;
    // `parameter_steps`: as parameter_steps() returned it; a parameter absent from it has no
    // state. Null (checkpoints from before per-parameter counts): every parameter has state and
    // `steps` updates. CheckpointError naming the first missing or mis-shaped tensor.
    void load_state(const std::map<std::string, at::Tensor>& tensors, std::int64_t steps,
                    const std::map<std::string, std::int64_t>* parameter_steps = nullptr);

  private:
    std::vector<NamedParameter> parameters_;
    std::vector<at::Tensor> exp_avg_;  // undefined until the parameter's first update
    std::vector<at::Tensor> exp_avg_sq_;
    std::vector<std::int64_t> updates_;  // per parameter
    AdamWOptions options_;
    std::int64_t steps_ = 0;
};

// Scales all gradients so that their global L2 norm is at most `max_norm` (no-op for
// max_norm <= 0). Returns the norm before clipping (NaN/inf if a gradient is not finite).
double clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm);

// The same over a model spread across processes: `replicated` parameters have the same gradients
// in every process; each member of `shard_group` holds its own share of `sharded` (experts), so
// their squared norms are summed over the group. Every member gets the same norm and scale.
double clip_grad_norm(const std::vector<at::Tensor>& replicated,
                      const std::vector<at::Tensor>& sharded, double max_norm,
                      ProcessGroup& shard_group);

}  // namespace moelab::core

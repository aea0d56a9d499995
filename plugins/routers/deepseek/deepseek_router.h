#pragma once

// DeepSeek-V3's routing (methods.md has no section on it; the settings follow the DeepSeek-V3
// technical report, §2.1.2, and are named after its open configuration): per-expert affinities
// s = sigmoid(x W^T) (or a softmax), selection of the k largest s + b, where b is a per-expert bias
// that only steers selection, optionally limited to the experts of the best groups, and combine
// weights from s alone: s of the chosen experts divided by their sum, times a scale.
//
// Note [Auxiliary-loss-free balancing]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// After every optimizer step each expert's bias moves by a fixed rate towards balance:
//   b_e += rate * sign(mean load - load_e)
// where load_e counts the tokens routed to e over the whole step: every micro-batch of gradient
// accumulation and, split across processes, every process's part (RouterInput::batch). The router
// has no hook after the optimizer, so it keeps the step's counts in a buffer and applies the update
// when the step is known to be complete: when a training micro-batch of another step arrives, or
// at any evaluation (which never falls inside a step). Every forward of a step sees the same bias,
// the trajectory is the same as updating right after the step, and evaluation sees every update.
// The bias, the pending counts and their step (-1: none) are buffers, so checkpoints hold them and
// a resumed run continues exactly. A frozen gate (requires_grad off, e.g. in a stage that trains
// other parameters) keeps its bias.

#include <cstdint>

#include "moelab/sdk/balance_losses.h"
#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::plugins::deepseek {

struct DeepSeekOptions {
    std::int64_t k = 2;
    bool sigmoid = true;           // affinities sigmoid(logits); else softmax(logits)
    bool normalize = true;         // divide the chosen affinities by their sum
    double route_scale = 1.0;      // multiplies the combine weights (DeepSeek-V3: 2.5)
    std::int64_t groups = 1;       // experts fall into this many equal groups
    std::int64_t topk_groups = 1;  // a token's experts come from its best groups (of `groups`)
    double bias_rate = 0.001;      // 0: no auxiliary-loss-free balancing
    double balance_coef = 0.0;     // Switch loss on the normalised affinities, per micro-batch
    double sequence_balance_coef = 0.0;  // the same per sequence, averaged (DeepSeek-V3: 1e-4)
    double global_balance_coef = 0.0;    // the same over the optimizer step's loads

    static DeepSeekOptions from(const sdk::Params& params);
};

class DeepSeekRouter : public sdk::Router {
  public:
    DeepSeekRouter(const sdk::MoeLayerContext& context, const DeepSeekOptions& options);

    sdk::RoutingDecision route(const sdk::RouterInput& input) override;

  private:
    // The selection keys (tokens, experts): affinity + bias where the host leaves the expert
    // selectable, -inf elsewhere and outside the token's best groups.
    at::Tensor selection_keys(const at::Tensor& selectable) const;
    // Note [Auxiliary-loss-free balancing]: the update of a complete pending step, then (in
    // training) this micro-batch's counts.
    void account_load(const at::Tensor& indices, const sdk::RouterInput& input);

    DeepSeekOptions options_;
    std::int64_t expert_count_;
    at::Tensor weight_;           // (experts, d_model) float32
    at::Tensor expert_bias_;      // (experts,) float32 buffer: steers selection only
    at::Tensor pending_load_;     // (experts,) float32 buffer: tokens per expert of pending_step_
    at::Tensor pending_step_;     // () int64 buffer: the step pending_load_ counts; -1: none
    sdk::BalanceLosses balance_;  // the options' balance losses
};

}  // namespace moelab::plugins::deepseek

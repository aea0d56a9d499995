#pragma once

// Top-k routing in the Switch/GShard family: a linear gate over the normalised hidden state,
// softmax then top-k (optionally renormalised) or top-k then softmax over the chosen logits, the
// Switch load-balancing loss (per micro-batch, per sequence or over the global batch), the ST-MoE
// router z-loss and Switch's multiplicative input jitter.

#include <cstdint>
#include <string>

#include "moelab/sdk/balance_losses.h"
#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::plugins::topk {

struct TopKOptions {
    std::int64_t k = 2;
    bool softmax_first = true;   // softmax over all experts, then top-k; else top-k logits, softmax
    bool renormalize = true;     // rescale the k selected probabilities to sum to 1
    double balance_coef = 0.01;  // Switch loss, per micro-batch
    double sequence_balance_coef = 0.0;  // Switch loss per sequence, averaged
    double global_balance_coef = 0.0;    // Switch loss over the optimizer step's loads
    double z_loss_coef = 0.0;
    double jitter = 0.0;  // training only: hidden *= U(1 - jitter, 1 + jitter)

    static TopKOptions from(const sdk::Params& params);
};

class TopKRouter : public sdk::Router {
  public:
    TopKRouter(const sdk::MoeLayerContext& context, const TopKOptions& options);

    sdk::RoutingDecision route(const sdk::RouterInput& input) override;

  private:
    TopKOptions options_;
    std::int64_t expert_count_;
    at::Tensor weight_;           // (experts, d_model) float32
    sdk::BalanceLosses balance_;  // the options' balance losses
};

}  // namespace moelab::plugins::topk

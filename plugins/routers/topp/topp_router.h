#pragma once

// Top-p routing, the TopP baseline of the CartesianMoE authors' code (methods.md §2.3): experts
// sorted by softmax probability, keep the shortest prefix whose cumulative probability exceeds p
// (the expert that crosses p is kept), weigh each kept expert by its raw probability (no
// renormalisation). Tokens use a variable number of experts, at least one.

#include <cstdint>

#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::plugins::topp {

struct TopPOptions {
    double p = 0.4;
    std::int64_t max_experts = 0;  // 0: no cap beyond the expert count
    double balance_coef = 0.01;

    static TopPOptions from(const sdk::Params& params);
};

// The selection on its own, for probabilities (tokens, experts): indices (tokens, slots) sorted
// by probability with -1 after each token's prefix, and the raw probabilities (0 in empty slots).
// `slots` is the longest prefix in the batch, capped by max_experts when > 0.
std::pair<at::Tensor, at::Tensor> select_top_p(const at::Tensor& probs, double p,
                                               std::int64_t max_experts);

class TopPRouter : public sdk::Router {
  public:
    TopPRouter(const sdk::MoeLayerContext& context, const TopPOptions& options);

    sdk::RoutingDecision route(const sdk::RouterInput& input) override;

  private:
    TopPOptions options_;
    std::int64_t expert_count_;
    at::Tensor weight_;  // (experts, d_model) float32
};

}  // namespace moelab::plugins::topp

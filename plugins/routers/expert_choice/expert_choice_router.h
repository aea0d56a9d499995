#pragma once

// Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing"):
// token-to-expert affinities S = softmax(x W^T) over the experts, then each expert takes the
// `capacity` tokens of the batch with the highest affinity to it, capacity = ceil(c * tokens /
// experts) for the capacity factor c. A token is processed by every expert that took it, weighted
// by its affinity, and by none when no expert did. Every expert gets exactly `capacity` tokens, so
// the load is balanced by construction and there is no balance loss.
//
// Note [Expert choice in a causal LM]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An expert ranks every token of the batch, so whether token t is processed depends on the other
// tokens of the batch, later positions of its own sequence included: the model is not causal, and
// its loss is not the loss of left-to-right generation. Results also depend on the batch: on its
// size (capacity scales with it) and on which sequences share it. Evaluation therefore sees the
// same batch shapes as training only when [eval] batch_size equals [train] batch_size; decoding a
// token at a time gives each expert one candidate. Compare its perplexity with token-choice
// routers with this in mind (the paper evaluates downstream tasks after fine-tuning, not LM
// perplexity). Split across processes, each process's experts would choose among its own part of
// the batch only, so the router does not declare parallel.split_batch and the host refuses such
// runs.

#include <cstdint>

#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::plugins::expert_choice {

// Tokens each expert takes from a batch: ceil(capacity_factor * tokens / experts), at most all of
// them.
std::int64_t expert_capacity(double capacity_factor, std::int64_t tokens, std::int64_t experts);

class ExpertChoiceRouter : public sdk::Router {
  public:
    ExpertChoiceRouter(const sdk::MoeLayerContext& context, double capacity_factor);

    // One slot per expert: slot e holds e where expert e took the token, else -1.
    sdk::RoutingDecision route(const sdk::RouterInput& input) override;

  private:
    double capacity_factor_;
    std::int64_t expert_count_;
    at::Tensor weight_;  // (experts, d_model) float32
};

}  // namespace moelab::plugins::expert_choice

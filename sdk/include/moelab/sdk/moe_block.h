#pragma once

// Routers in their full form: a block that owns the whole FFN sub-layer of an MoE layer, residual
// included. It builds its expert banks through HostServices and may route several times with norms
// and residuals in between (CartesianMoE, Finedeep), compute all experts in training and only the
// active ones at inference (DSMoE), or compute gates from expert outputs.

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>

#include "moelab/sdk/batch_reduction.h"
#include "moelab/sdk/routing.h"
#include "moelab/sdk/selection_control.h"

namespace moelab::sdk {

struct BlockInput {
    // (tokens, d_model), the model's compute dtype: the residual stream after attention, not
    // normalised. The block applies its own norms.
    at::Tensor hidden;
    at::Tensor token_ids;  // (tokens,) int64
    bool training = false;
    std::int64_t step = 0;
    // Never null while the host calls forward(): each router of the block hands it its scores
    // before choosing, numbered in execution order (Note [Selection contract]).
    SelectionControl* selection = nullptr;
    // Since 4.1; never null while the host calls forward(): sums over the whole batch when it is
    // split across processes (batch_reduction.h); hand it to the block's routers.
    const BatchReduction* batch = nullptr;
    // Since 5.3, as in RouterInput (router.h): hand them to the block's routers.
    std::int64_t sequence_length = 0;
    std::int64_t micro_batch = 0;
    std::int64_t micro_batches = 1;
};

struct BlockOutput {
    at::Tensor hidden;  // (tokens, d_model): the updated residual stream
    // One decision per routed sub-layer, in execution order; the host derives the routing
    // statistics (tokens per expert, entropy, ...) from them. Dense blocks may report decisions
    // whose slots cover every expert.
    std::vector<RoutingDecision> routing;
    NamedScalars aux_losses;  // differentiable, coefficient applied
    NamedScalars stats;       // detached
};

class MoeBlock : public torch::nn::Module {
  public:
    virtual BlockOutput forward(const BlockInput& input) = 0;
};

}  // namespace moelab::sdk

#pragma once

// Routers in their simple form: a gate. The host's standard MoE block normalises the residual
// stream, calls route(), mixes the chosen experts of a host expert bank, applies token_scale, adds
// shared experts and the residual. Routers that need more (several routed sub-layers, dense
// training compute, gates computed from expert outputs) implement MoeBlock instead.

#include <cstdint>

#include <torch/nn/module.h>

#include "moelab/sdk/batch_reduction.h"
#include "moelab/sdk/routing.h"
#include "moelab/sdk/selection_control.h"

namespace moelab::sdk {

struct RouterInput {
    // (tokens, d_model) float32: the normalised FFN input. Always float32, also when the model
    // runs in bfloat16, and the host disables autocast around route(): router logits, softmax or
    // sigmoid, and selection happen in fp32 (Note [fp32 routing] in sdk/README.md).
    at::Tensor hidden;
    // (tokens,) int64: vocabulary id of each token (MaskMoE, Hash routing).
    at::Tensor token_ids;
    bool training = false;
    std::int64_t step = 0;  // optimizer step, for schedules
    // Never null while the host calls route(): hand it the scores before choosing, as router 0
    // (Note [Selection contract] in selection_control.h).
    SelectionControl* selection = nullptr;
    // Since 4.1; never null while the host calls route(): sums over the whole batch when it is
    // split across processes (batch_reduction.h). Batch-level losses use it (switch_balance_loss).
    const BatchReduction* batch = nullptr;
    // Since 5.3: the rows of `hidden` are whole sequences of `sequence_length` consecutive tokens,
    // sequence after sequence; 0 where they are not (decoding with a cache, padded prompts).
    // Sequence-level losses read it (sequence_balance_loss).
    std::int64_t sequence_length = 0;
    // Since 5.3: this forward's micro-batch of the optimizer step (0-based) and the step's number
    // of micro-batches (gradient accumulation); 0 and 1 outside training. Losses over the whole
    // step read them (GlobalBatchBalance in global_batch_balance.h).
    std::int64_t micro_batch = 0;
    std::int64_t micro_batches = 1;
};

class Router : public torch::nn::Module {
  public:
    virtual RoutingDecision route(const RouterInput& input) = 0;
};

}  // namespace moelab::sdk

#pragma once

// What a router decides for a batch of tokens. One struct covers fixed top-k, variable-k (TopP,
// MaskMoE with few visible experts), threshold routers that may pick no expert at all (DSMoE) and
// dense gates (Finedeep): see the table in sdk/README.md.

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "moelab/sdk/extensions.h"

namespace moelab::sdk {

// (name, scalar tensor) pairs, in a stable order chosen by the producer.
using NamedScalars = std::vector<std::pair<std::string, at::Tensor>>;

struct RoutingDecision {
    // (tokens, slots) int64. Expert of each slot, or -1 for an empty slot: a token may use any
    // number of experts from 0 to `slots`.
    at::Tensor expert_indices;
    // (tokens, slots) float32. Weight of each slot's expert output; 0 for empty slots.
    // Differentiable: the router's gradient flows through it.
    at::Tensor combine_weights;
    // Optional (tokens, experts) float32: the full routing distribution (softmax or sigmoid
    // scores), used for routing entropy and robustness statistics.
    at::Tensor probs;
    // Optional (tokens, experts) bool: which experts a threshold router activated.
    at::Tensor active_mask;
    // Method-specific data (Note [Extensions]): the keys of decision_extension below.
    Extensions extensions;
    // Differentiable scalars, already multiplied by their coefficients, added to the loss.
    NamedScalars aux_losses;
    // Detached scalars reported in the metrics (e.g. "active_experts_mean").
    NamedScalars stats;
};

// Keys of RoutingDecision::extensions (sdk/README.md "Extensions" lists each with its version).
namespace decision_extension {
// (tokens,) float32, since 4.0: multiplies each token's mixed routed-expert output in the host's
// standard block (a threshold router's n / #active, as DSMoE's). Blocks apply their own scaling
// and may report it here for the metrics.
inline constexpr ExtensionKey<at::Tensor> kTokenScale{"token_scale"};
}  // namespace decision_extension

}  // namespace moelab::sdk

#pragma once

// The host's hook on every MoE layer's routing, for routing traces (core/eval/routing_trace.h):
// it sees each layer's checked decisions, and may hand a gate router's layer the decision to use
// instead of calling the router (replay). Plugins never see it.

#include <optional>
#include <vector>

#include "moelab/sdk/routing.h"

namespace moelab::core {

class RoutingTap {
  public:
    virtual ~RoutingTap() = default;
    // Before layer `layer` routes the rows `token_ids` ((tokens,) int64): the decision to use in
    // place of the router's (only for the host's standard block), or nullopt to route as usual.
    virtual std::optional<sdk::RoutingDecision> replace(int layer, const at::Tensor& token_ids) = 0;
    // After the layer: its decisions (BlockOutput::routing), checked, in execution order.
    virtual void observe(int layer, const at::Tensor& token_ids,
                         const std::vector<sdk::RoutingDecision>& routing) = 0;
};

}  // namespace moelab::core

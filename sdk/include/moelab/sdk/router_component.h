#pragma once

// How a plugin registers a router. A router component provides exactly one factory: make_router
// (a gate for the host's standard MoE block) or make_block (a whole FFN block).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moelab/sdk/capability.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::sdk {

struct RouterComponent {
    std::string name;     // recipe name, e.g. "topk"; unique across all loaded plugins
    std::string summary;  // one line for `moelab plugins`
    ParamSchema params;
    SupportsFn supports;  // optional
    // Optional features (capability.h feature::) this component has; any other is absent.
    std::vector<std::string> features;
    std::function<std::shared_ptr<Router>(const MoeLayerContext&, const Params&)> make_router;
    std::function<std::shared_ptr<MoeBlock>(const MoeLayerContext&, const Params&)> make_block;
};

}  // namespace moelab::sdk

#pragma once

// Where a router or MoE block sits, handed to its factory.

#include <cstdint>

#include "moelab/sdk/capability.h"
#include "moelab/sdk/host_services.h"

namespace moelab::sdk {

struct MoeLayerContext {
    ModelShape model;
    int layer_index = 0;      // transformer layer, 0-based
    int moe_layer_index = 0;  // position among the model's MoE layers, 0-based
    int moe_layers = 0;       // MoE layers in the model
    // Seed for any randomness of this layer (mask tables, hash tables, initialisation), derived
    // from the recipe seed and the layer index. Using it keeps runs reproducible.
    std::uint64_t seed = 0;
    // Seed shared by all MoE layers of the model, derived from the recipe seed only: for state
    // that every layer must build identically (a MaskMoE mask table shared across layers).
    std::uint64_t model_seed = 0;
    // The host's initialisation convention (Note [Initialisation] in sdk/README.md): weight
    // matrices ~ N(0, init_std^2); matrices writing into the residual stream use
    // init_std / sqrt(2 * model.layers). Plugins follow it for their own weights.
    double init_std = 0.02;
    // Valid while the factory runs and for the life of the model.
    HostServices* host = nullptr;
};

}  // namespace moelab::sdk

#pragma once

// The conformance kit for router components (gate or block form), `moelab plugins test`: builds
// MoE layers from the component exactly as the model does (make_moe_layer) on a small model and
// checks what every router must do: the decision contract, gradients into every trainable
// parameter (also at k = 1 when the router has an option `k`), determinism under a seed, experts
// without tokens, batches of 1 and of many tokens, fp32 routing under bf16 input, a checkpoint
// round trip of its parameters and buffers, every perturbation it lists, and the throughput of a
// forward pass.

#include "core/conformance/conformance_report.h"
#include "core/plugin/registry.h"

namespace moelab::core {

ConformanceReport test_router_component(const RegisteredRouter& router);

}  // namespace moelab::core

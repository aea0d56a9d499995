#pragma once

// The conformance kit for attention components, `moelab plugins test`: builds the component on a
// small model and checks the output contract, causality (no position sees a later one), gradients
// into every parameter, determinism under a seed, a checkpoint round trip and, when the component
// lists feature::kKvCache, that decoding token by token with its cache equals recomputing the
// whole sequence, also for left-padded prompts of different lengths decoded together until the
// cache is full (and that one more token is refused); plus the throughput of a forward pass.

#include "core/conformance/conformance_report.h"
#include "core/plugin/registry.h"

namespace moelab::core {

ConformanceReport test_attention_component(const RegisteredAttention& attention);

}  // namespace moelab::core

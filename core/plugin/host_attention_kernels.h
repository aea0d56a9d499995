#pragma once

// The fused attention operators the host hands every attention plugin (sdk::AttentionKernels,
// AttentionContext::kernels): the CPU causal attention of kernels/binding/causal_attention.h.

#include "moelab/sdk/attention_kernels.h"

namespace moelab {

// One for the process; it outlives every plugin module.
const sdk::AttentionKernels& host_attention_kernels();

}  // namespace moelab

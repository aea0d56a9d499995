#pragma once

// One call of an attention module as a layer of the host makes it: hidden states and positions,
// the forward pass's state (shared by the layers of one pass) and, when decoding, a cache.

#include <ATen/ATen.h>

#include "moelab/sdk/attention.h"
#include "moelab/sdk/forward_state.h"

namespace moelab::tests {

inline at::Tensor attend(sdk::Attention& attention, const at::Tensor& hidden,
                         const at::Tensor& positions, sdk::ForwardState& state,
                         sdk::AttentionCache* cache = nullptr) {
    sdk::AttentionInput input;
    input.hidden = hidden;
    input.positions = positions;
    input.cache = cache;
    input.state = &state;
    return attention.forward(input);
}

}  // namespace moelab::tests

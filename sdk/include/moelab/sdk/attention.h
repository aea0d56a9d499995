#pragma once

// Attention components. The host owns the pre-norm and the residual; an attention module maps the
// normalised stream to the residual branch. Causal by contract. Per-head positional parameters
// (HARPE's base per head) are the plugin's own parameters; cross-layer state (UniAttn) travels in
// ForwardState; incremental decoding uses the plugin's own AttentionCache.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "moelab/sdk/capability.h"
#include "moelab/sdk/forward_state.h"
#include "moelab/sdk/params.h"

namespace moelab::sdk {

struct AttentionContext {
    ModelShape model;
    int layer_index = 0;
    std::uint64_t seed = 0;  // for any randomness of this layer, derived from the recipe seed
    double init_std = 0.02;  // see MoeLayerContext::init_std
};

// Per-layer decoding cache, owned by the caller of make_cache(). Each plugin decides what it keeps
// (keys and values, or values only for layers that reuse another layer's softmax).
class AttentionCache {
public:
    virtual ~AttentionCache() = default;
    virtual std::int64_t length() const = 0;  // tokens cached so far
};

struct AttentionInput {
    at::Tensor hidden;     // (batch, seq, d_model), normalised, the model's compute dtype
    at::Tensor positions;  // (seq,) int64: absolute positions of these tokens
    // This layer's cache, or null (training, full-sequence evaluation). With a cache the new tokens
    // attend to everything cached plus themselves, and are appended.
    AttentionCache* cache = nullptr;
    ForwardState* state = nullptr;  // never null during a model forward
    bool training = false;
};

class Attention : public torch::nn::Module {
public:
    // Returns the residual branch, (batch, seq, d_model).
    virtual at::Tensor forward(const AttentionInput& input) = 0;

    // A cache able to hold `max_len` tokens for `batch` sequences. Components that can decode
    // incrementally list feature::kKvCache; the others throw here.
    virtual std::unique_ptr<AttentionCache> make_cache(std::int64_t batch,
                                                       std::int64_t max_len) = 0;
};

struct AttentionComponent {
    std::string name;
    std::string summary;
    ParamSchema params;
    SupportsFn supports;  // optional
    // Optional features (capability.h feature::) this component has; any other is absent.
    std::vector<std::string> features;
    std::function<std::shared_ptr<Attention>(const AttentionContext&, const Params&)>
        make_attention;
};

}  // namespace moelab::sdk

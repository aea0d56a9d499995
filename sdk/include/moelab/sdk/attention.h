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

#include "moelab/sdk/attention_kernels.h"
#include "moelab/sdk/capability.h"
#include "moelab/sdk/forward_state.h"
#include "moelab/sdk/params.h"

namespace moelab::sdk {

struct AttentionContext {
    ModelShape model;
    int layer_index = 0;
    std::uint64_t seed = 0;  // for any randomness of this layer, derived from the recipe seed
    double init_std = 0.02;  // see MoeLayerContext::init_std
    // Since 5.6. The host's fused attention operators, or null (a plugin built outside a run, as in
    // its own tests); they outlive the plugin's modules.
    const AttentionKernels* kernels = nullptr;
};

// Per-layer decoding cache, owned by the caller of make_cache() (the host keeps the plugin's
// library loaded while it lives). Each plugin decides what it keeps (keys and values, or values
// only for layers that reuse another layer's softmax); key_value_cache.h is a ready-made one.
// Preallocated for `max_len` tokens: appending never reallocates or concatenates.
class AttentionCache {
  public:
    virtual ~AttentionCache() = default;
    virtual std::int64_t length() const = 0;  // token slots filled so far (the same in every row)
    // Since 5.0. Bytes the cache holds per token of one sequence (all its tensors divided by
    // batch x max_len), for cost accounting; -1: the plugin does not say.
    virtual std::int64_t bytes_per_token() const { return -1; }
};

// Since 5.0. What one layer costs per token, as the plugin computes it (the host cannot know what
// a plugin does inside). Multiply-adds count as 2 FLOPs.
struct AttentionCost {
    // Forward FLOPs for one token whose query attends to `context` keys (itself included),
    // projections included.
    double flops_per_token = -1;  // -1: unknown
};

// Note [Positions and padding] (since 5.0): `positions` is (batch, seq): row b's tokens sit at
// those absolute positions, so rows may have different lengths and offsets (a batch of prompts,
// left-padded); (1, seq) when every row has the same positions (training, evaluation). A negative
// position marks a padding slot: no query may attend to its key, and the host ignores its output.
// Causality follows positions, not slot order: a query at position p sees exactly the keys (cached
// or new) at positions 0 <= q <= p of its own row. A causal flag aligned to the top-left corner of
// the score matrix is wrong once a cache holds earlier tokens; causal_mask.h builds the right mask.
struct AttentionInput {
    at::Tensor hidden;     // (batch, seq, d_model), normalised, the model's compute dtype
    at::Tensor positions;  // (batch or 1, seq) int64, Note [Positions and padding]
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

    // Since 5.0. This layer's cost for one token attending to `context` keys (moelab generate
    // --stats, eval); the default says nothing is known, and the host reports n/a.
    virtual AttentionCost cost(std::int64_t context) const {
        (void)context;
        return {};
    }
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

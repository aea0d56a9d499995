#pragma once

// One pre-norm decoder layer: h + Attention(RMSNorm(h)), then the FFN sub-layer (dense SwiGLU or
// an MoE layer; both own their norm and residual).

#include <memory>

#include "core/model/language_model.h"
#include "core/model/swiglu_ffn.h"
#include "core/moe/moe_layer.h"
#include "core/plugin/plugin_info.h"

namespace moelab::core {

// What every layer of one forward pass shares besides the hidden states.
struct LayerInput {
    const at::Tensor& token_ids;  // (batch, seq)
    const at::Tensor& positions;  // (batch, seq), Note [Positions and padding]
    // Flat (batch * seq) indices of the tokens that are not padding; undefined: every token. The
    // FFN sub-layer sees only these (padding must not take expert capacity or skew statistics).
    const at::Tensor& valid_rows;
    sdk::AttentionCache* cache;  // this layer's decoding cache, or null
};

class TransformerLayer : public torch::nn::Module {
  public:
    // Exactly one of `dense` and `moe` is set. `attention_library` keeps the attention plugin
    // loaded for the caches this layer makes.
    TransformerLayer(int index, std::shared_ptr<sdk::Attention> attention,
                     std::shared_ptr<const PluginInfo> attention_plugin,
                     LibraryHandle attention_library, std::shared_ptr<SwiGluFfn> dense,
                     std::shared_ptr<MoeLayer> moe, std::int64_t d_model, double norm_eps);

    // hidden: (batch, seq, d_model). Adds this layer's auxiliary losses to `aux_loss`.
    at::Tensor forward(const at::Tensor& hidden, const LayerInput& input, sdk::ForwardState& state,
                       const ForwardOptions& options, at::Tensor& aux_loss);

    // The attention plugin's cache for this layer, keeping the plugin's library loaded.
    std::shared_ptr<sdk::AttentionCache> make_cache(std::int64_t batch, std::int64_t capacity);
    sdk::AttentionCost attention_cost(std::int64_t context) const;

    MoeLayer* moe() const { return moe_.get(); }
    const sdk::Attention& attention() const { return *attention_; }

    // Note [Calibration] in the SDK's calibration.h: whether this layer's attention is
    // sdk::Calibrated with something to fit, and fitting it (plugin errors name the plugin and
    // this layer).
    bool calibrates() const;
    void calibrate(const sdk::CalibrationData& data);

  private:
    // sequence_length: BlockInput::sequence_length, 0 when the rows are not whole sequences.
    at::Tensor feed_forward(const at::Tensor& flat, const at::Tensor& token_ids,
                            std::int64_t sequence_length, const ForwardOptions& options,
                            at::Tensor& aux_loss);

    int index_;
    std::shared_ptr<sdk::RmsNorm> attention_norm_;
    std::shared_ptr<sdk::Attention> attention_;
    std::shared_ptr<const PluginInfo> attention_plugin_;
    LibraryHandle attention_library_;
    std::shared_ptr<SwiGluFfn> dense_;
    std::shared_ptr<MoeLayer> moe_;
};

}  // namespace moelab::core

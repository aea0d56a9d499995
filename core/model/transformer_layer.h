#pragma once

// One pre-norm decoder layer: h + Attention(RMSNorm(h)), then the FFN sub-layer (dense SwiGLU or
// an MoE layer; both own their norm and residual).

#include <memory>

#include "core/model/language_model.h"
#include "core/model/swiglu_ffn.h"
#include "core/moe/moe_layer.h"

namespace moelab::core {

class TransformerLayer : public torch::nn::Module {
public:
    // Exactly one of `dense` and `moe` is set.
    TransformerLayer(int index, std::shared_ptr<sdk::Attention> attention,
                     std::shared_ptr<const PluginInfo> attention_plugin,
                     std::shared_ptr<SwiGluFfn> dense, std::shared_ptr<MoeLayer> moe,
                     std::int64_t d_model, double norm_eps);

    // hidden: (batch, seq, d_model); token_ids: (batch, seq); positions: (seq,).
    // Adds this layer's auxiliary losses to `aux_loss`.
    at::Tensor forward(const at::Tensor& hidden, const at::Tensor& token_ids,
                       const at::Tensor& positions, sdk::ForwardState& state,
                       const ForwardOptions& options, at::Tensor& aux_loss);

    MoeLayer* moe() const { return moe_.get(); }

private:
    int index_;
    std::shared_ptr<sdk::RmsNorm> attention_norm_;
    std::shared_ptr<sdk::Attention> attention_;
    std::shared_ptr<const PluginInfo> attention_plugin_;
    std::shared_ptr<SwiGluFfn> dense_;
    std::shared_ptr<MoeLayer> moe_;
};

}  // namespace moelab::core

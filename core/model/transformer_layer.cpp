#include "core/model/transformer_layer.h"

#include <fmt/format.h>

#include "core/plugin/plugin_error.h"
#include "core/system/tensor_text.h"

namespace moelab::core {

TransformerLayer::TransformerLayer(int index, std::shared_ptr<sdk::Attention> attention,
                                   std::shared_ptr<const PluginInfo> attention_plugin,
                                   std::shared_ptr<SwiGluFfn> dense, std::shared_ptr<MoeLayer> moe,
                                   std::int64_t d_model, double norm_eps)
    : index_(index),
      attention_(std::move(attention)),
      attention_plugin_(std::move(attention_plugin)),
      dense_(std::move(dense)),
      moe_(std::move(moe)) {
    attention_norm_ =
        register_module("attention_norm", std::make_shared<sdk::RmsNorm>(d_model, norm_eps));
    register_module("attention", attention_);
    if (dense_) register_module("ffn", dense_);
    if (moe_) register_module("moe", moe_);
}

at::Tensor TransformerLayer::forward(const at::Tensor& hidden, const at::Tensor& token_ids,
                                     const at::Tensor& positions, sdk::ForwardState& state,
                                     const ForwardOptions& options, at::Tensor& aux_loss) {
    sdk::AttentionInput attention_input;
    attention_input.hidden = attention_norm_->forward(hidden);
    attention_input.positions = positions;
    attention_input.state = &state;
    attention_input.training = options.training;
    const at::Tensor branch =
        call_plugin(*attention_plugin_, fmt::format("attention of layer {}", index_),
                    [&] { return attention_->forward(attention_input); });
    if (!branch.defined() || branch.sizes() != hidden.sizes()) {
        throw PluginError(fmt::format("{}: attention of layer {} returned {}, expected shape {}",
                                      describe_plugin(*attention_plugin_), index_,
                                      tensor_text(branch), shape_text(hidden.sizes())));
    }
    const at::Tensor h = hidden + branch;
    const at::Tensor flat = h.reshape({-1, h.size(-1)});  // (tokens, d_model)
    if (dense_) return dense_->forward(flat).view(h.sizes());

    sdk::BlockInput block_input;
    block_input.hidden = flat;
    block_input.token_ids = token_ids.reshape({-1});
    block_input.training = options.training;
    block_input.step = options.step;
    block_input.batch = options.batch_reduction;
    LayerRoutingStats* stats = options.stats ? &options.stats->layer(index_) : nullptr;
    sdk::BlockOutput output = moe_->forward(block_input, stats, options.perturbation,
                                            SelectionSite{index_, options.batch, options.step});
    for (const auto& [name, loss] : output.aux_losses) aux_loss = aux_loss + loss.to(at::kFloat);
    return output.hidden.view(h.sizes());
}

}  // namespace moelab::core

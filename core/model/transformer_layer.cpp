#include "core/model/transformer_layer.h"

#include <fmt/format.h>

#include "core/plugin/keep_alive.h"
#include "core/plugin/plugin_error.h"
#include "core/system/profile_scope.h"
#include "core/system/tensor_text.h"

namespace moelab::core {

TransformerLayer::TransformerLayer(int index, std::shared_ptr<sdk::Attention> attention,
                                   std::shared_ptr<const PluginInfo> attention_plugin,
                                   LibraryHandle attention_library,
                                   std::shared_ptr<SwiGluFfn> dense, std::shared_ptr<MoeLayer> moe,
                                   std::int64_t d_model, double norm_eps)
    : index_(index),
      attention_(std::move(attention)),
      attention_plugin_(std::move(attention_plugin)),
      attention_library_(std::move(attention_library)),
      dense_(std::move(dense)),
      moe_(std::move(moe)) {
    attention_norm_ =
        register_module("attention_norm", std::make_shared<sdk::RmsNorm>(d_model, norm_eps));
    register_module("attention", attention_);
    if (dense_) register_module("ffn", dense_);
    if (moe_) register_module("moe", moe_);
}

at::Tensor TransformerLayer::forward(const at::Tensor& hidden, const LayerInput& input,
                                     sdk::ForwardState& state, const ForwardOptions& options,
                                     at::Tensor& aux_loss) {
    // The layer's own work (norm, residual additions); the scopes inside take their share.
    ProfileScope layer_scope(OpFamily::kNormsElementwise);
    sdk::AttentionInput attention_input;
    attention_input.hidden = attention_norm_->forward(hidden);
    attention_input.positions = input.positions;
    attention_input.cache = input.cache;
    attention_input.state = &state;
    attention_input.training = options.training;
    const std::int64_t cached_before = input.cache != nullptr ? input.cache->length() : 0;
    const at::Tensor branch = [&] {
        ProfileScope scope(OpFamily::kAttention);
        return call_plugin(*attention_plugin_, fmt::format("attention of layer {}", index_),
                           [&] { return attention_->forward(attention_input); });
    }();
    if (!branch.defined() || branch.sizes() != hidden.sizes()) {
        throw PluginError(fmt::format("{}: attention of layer {} returned {}, expected shape {}",
                                      describe_plugin(*attention_plugin_), index_,
                                      tensor_text(branch), shape_text(hidden.sizes())));
    }
    if (input.cache != nullptr && input.cache->length() != cached_before + hidden.size(1)) {
        throw PluginError(
            fmt::format("{}: the cache of layer {} holds {} tokens after appending {} to {}",
                        describe_plugin(*attention_plugin_), index_, input.cache->length(),
                        hidden.size(1), cached_before));
    }
    const at::Tensor h = hidden + branch;
    if (options.observer != nullptr)
        options.observer->attention_done(index_, attention_input.hidden, h);
    const at::Tensor flat = h.reshape({-1, h.size(-1)});  // (tokens, d_model)
    const at::Tensor ids = input.token_ids.reshape({-1});
    if (!input.valid_rows.defined()) {
        // Whole sequences unless the new tokens continue what a cache holds.
        const std::int64_t sequence_length = input.cache == nullptr ? h.size(1) : 0;
        return feed_forward(flat, ids, sequence_length, options, aux_loss).view(h.sizes());
    }
    // Padding slots keep their residual stream; only real tokens go through the FFN.
    const at::Tensor out =
        feed_forward(flat.index_select(0, input.valid_rows), ids.index_select(0, input.valid_rows),
                     /*sequence_length=*/0, options, aux_loss);
    return flat.index_copy(0, input.valid_rows, out.to(flat.scalar_type())).view(h.sizes());
}

bool TransformerLayer::calibrates() const {
    const auto* calibrated = dynamic_cast<const sdk::Calibrated*>(attention_.get());
    return calibrated != nullptr &&
           call_plugin(*attention_plugin_, fmt::format("calibrates() of layer {}", index_),
                       [&] { return calibrated->calibrates(); });
}

void TransformerLayer::calibrate(const sdk::CalibrationData& data) {
    auto* calibrated = dynamic_cast<sdk::Calibrated*>(attention_.get());
    if (calibrated == nullptr) {
        throw PluginError(fmt::format("{}: the attention of layer {} cannot be calibrated",
                                      describe_plugin(*attention_plugin_), index_));
    }
    torch::NoGradGuard no_grad;
    call_plugin(*attention_plugin_, fmt::format("calibrating the attention of layer {}", index_),
                [&] { calibrated->calibrate(data); });
}

at::Tensor TransformerLayer::feed_forward(const at::Tensor& flat, const at::Tensor& token_ids,
                                          std::int64_t sequence_length,
                                          const ForwardOptions& options, at::Tensor& aux_loss) {
    if (dense_) {
        ProfileScope scope(OpFamily::kDenseFfn);
        return dense_->forward(flat);
    }

    sdk::BlockInput block_input;
    block_input.hidden = flat;
    block_input.token_ids = token_ids;
    block_input.training = options.training;
    block_input.step = options.step;
    block_input.batch = options.batch_reduction;
    block_input.sequence_length = sequence_length;
    block_input.micro_batch = options.micro_batch;
    block_input.micro_batches = options.micro_batches;
    LayerRoutingStats* stats = options.stats ? &options.stats->layer(index_) : nullptr;
    ProfileScope scope(OpFamily::kMoeBlockOther);  // the block's router and experts take theirs
    sdk::BlockOutput output =
        moe_->forward(block_input, stats, options.perturbation,
                      SelectionSite{index_, options.batch, options.step}, options.routing_tap);
    for (const auto& [name, loss] : output.aux_losses) aux_loss = aux_loss + loss.to(at::kFloat);
    return output.hidden;
}

std::shared_ptr<sdk::AttentionCache> TransformerLayer::make_cache(std::int64_t batch,
                                                                  std::int64_t capacity) {
    std::shared_ptr<sdk::AttentionCache> cache =
        call_plugin(*attention_plugin_, fmt::format("make_cache of layer {}", index_), [&] {
            return std::shared_ptr<sdk::AttentionCache>(attention_->make_cache(batch, capacity));
        });
    if (cache == nullptr) {
        throw PluginError(fmt::format("{}: make_cache of layer {} returned null",
                                      describe_plugin(*attention_plugin_), index_));
    }
    if (cache->length() != 0) {
        throw PluginError(fmt::format("{}: a new cache of layer {} says it holds {} tokens",
                                      describe_plugin(*attention_plugin_), index_,
                                      cache->length()));
    }
    return keep_alive(std::move(cache), attention_library_);
}

sdk::AttentionCost TransformerLayer::attention_cost(std::int64_t context) const {
    return call_plugin(*attention_plugin_, fmt::format("cost of layer {}", index_),
                       [&] { return attention_->cost(context); });
}

}  // namespace moelab::core

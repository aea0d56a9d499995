// Registers the `rope` attention: sdk::RotaryAttention with one base for every head.

#include <string>

#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rotary_attention.h"

namespace moelab::plugins::rope {
namespace {

void register_components(sdk::Registrar& registrar) {
    sdk::AttentionComponent component;
    component.name = "rope";
    component.summary = "Causal multi-head attention with rotary embeddings, optional GQA";
    component.params.add_float("base", 10000.0, "RoPE base b: theta_i = b^(-2i/head_dim)")
        .at_least(1.0);
    component.supports = [](const sdk::CapabilityQuery& query, const sdk::Params&) {
        return sdk::rotary_attention_fits(query);
    };
    component.features = {std::string(sdk::feature::kKvCache),
                          std::string(sdk::feature::kHfLlamaAttention)};
    component.make_attention = [](const sdk::AttentionContext& context, const sdk::Params& params) {
        return std::make_shared<sdk::RotaryAttention>(
            context,
            sdk::rope_inv_freq(params.get_float("base"), context.model.head_dim).unsqueeze(0));
    };
    registrar.add_attention(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::rope

MOELAB_PLUGIN("rope", "1.2.0", "Rotary-position causal attention",
              moelab::plugins::rope::register_components)

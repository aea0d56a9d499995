// Registers the `pi` attention: position interpolation (Chen et al. 2023, "Extending Context
// Window of Large Language Models via Positional Interpolation"), HARPE's PI baseline (methods.md
// §5.4). RoPE whose position m rotates as m / scale, so that a model trained at length L sees the
// angles of its training range at scale x L. sdk::RotaryAttention with the frequencies divided by
// the scale.

#include <string>

#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rotary_attention.h"

namespace moelab::plugins::pi {
namespace {

void register_components(sdk::Registrar& registrar) {
    sdk::AttentionComponent component;
    component.name = "pi";
    component.summary =
        "Rotary attention with position interpolation: position m rotates as m / scale";
    component.params.add_float("base", 10000.0, "RoPE base b: theta_i = b^(-2i/head_dim)")
        .at_least(1.0);
    component.params
        .add_float("scale", 1.0,
                   "Interpolation factor: the target length over the trained length (1: RoPE)")
        .at_least(1.0);
    component.supports = [](const sdk::CapabilityQuery& query, const sdk::Params&) {
        return sdk::rotary_attention_fits(query);
    };
    component.features = {std::string(sdk::feature::kKvCache),
                          std::string(sdk::feature::kHfLlamaAttention)};
    component.make_attention = [](const sdk::AttentionContext& context, const sdk::Params& params) {
        const at::Tensor inv_freq =
            sdk::rope_inv_freq(params.get_float("base"), context.model.head_dim).unsqueeze(0) /
            params.get_float("scale");
        return std::make_shared<sdk::RotaryAttention>(context, inv_freq);
    };
    registrar.add_attention(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::pi

MOELAB_PLUGIN("pi", "1.1.0", "Rotary attention with position interpolation",
              moelab::plugins::pi::register_components)

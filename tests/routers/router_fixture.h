#pragma once

// Building one MoE layer from a built-in router plugin exactly as the model does
// (make_moe_layer), with options given by name over the plugin's defaults, for tests that assert
// a router's defining property.

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "core/moe/moe_layer.h"
#include "core/plugin/loader.h"

namespace moelab::tests {

using Options = std::map<std::string, sdk::ParamValue, std::less<>>;

inline core::PluginRegistry& builtin_plugins() {
    static core::PluginRegistry registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    return registry;
}

// The layer keeps its host services alive.
struct BuiltLayer {
    std::unique_ptr<core::LayerHostServices> host;
    std::shared_ptr<core::MoeLayer> layer;

    sdk::BlockOutput forward(const at::Tensor& hidden, const at::Tensor& token_ids, bool training,
                             const core::Perturbation* perturbation = nullptr,
                             core::LayerRoutingStats* stats = nullptr) {
        layer->train(training);
        sdk::BlockInput input;
        input.hidden = hidden;
        input.token_ids = token_ids;
        input.training = training;
        return layer->forward(input, stats, perturbation);
    }
    // With every field of `input` as given (sequence length, micro-batch, ...).
    sdk::BlockOutput forward(sdk::BlockInput input) {
        layer->train(input.training);
        return layer->forward(std::move(input), nullptr, nullptr);
    }
    at::Tensor parameter(const std::string& name) const { return layer->named_parameters()[name]; }
    at::Tensor buffer(const std::string& name) const { return layer->named_buffers()[name]; }
};

struct LayerSpec {
    std::int64_t d_model = 8;
    std::int64_t experts = 4;
    std::int64_t d_ff_expert = 6;
    std::int64_t d_ff = 24;  // the dense FFN size (Finedeep)
    std::int64_t vocab = 16;
    std::int64_t shared_experts = 0;
    bool shared_gate = false;       // [moe] shared_gate
    std::uint64_t seed = 5;         // the layer's seed (and its host's)
    std::uint64_t model_seed = 99;  // shared by all layers of a model
    at::Tensor token_counts;        // (vocab,) int64; default: id v occurs v times
};

inline BuiltLayer build_layer(const std::string& router, const Options& overrides,
                              const LayerSpec& spec = {}) {
    const core::RegisteredRouter* component = builtin_plugins().find_router(router);
    if (component == nullptr) throw std::runtime_error("no built-in router " + router);
    Options values;
    for (const auto& p : component->component.params.specs()) values[p.name] = p.default_value;
    for (const auto& [name, value] : overrides) {
        if (values.count(name) == 0) throw std::runtime_error("no option " + name);
        values[name] = value;
    }
    const at::Tensor counts =
        spec.token_counts.defined() ? spec.token_counts : at::arange(spec.vocab, at::kLong);
    BuiltLayer built;
    built.host = std::make_unique<core::LayerHostServices>(
        core::DispatchPolicy{}, 0.5, 0.3, spec.seed * 7 + 1, [counts] { return counts; });
    sdk::MoeLayerContext context;
    context.model.d_model = spec.d_model;
    context.model.experts = spec.experts;
    context.model.d_ff_expert = spec.d_ff_expert;
    context.model.d_ff = spec.d_ff;
    context.model.vocab_size = spec.vocab;
    context.model.shared_experts = spec.shared_experts;
    context.model.shared_gate = spec.shared_gate;
    context.model.layers = 2;
    context.moe_layers = 2;
    context.seed = spec.seed;
    context.model_seed = spec.model_seed;
    context.init_std = 0.5;
    context.host = built.host.get();
    built.layer = core::make_moe_layer(*component, sdk::Params(values), context, *built.host);
    return built;
}

}  // namespace moelab::tests

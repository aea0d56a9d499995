#include "core/plugin/instantiate.h"

#include <fmt/format.h>

#include "core/plugin/keep_alive.h"
#include "core/plugin/plugin_error.h"
#include "core/system/file_error.h"

namespace moelab::core {

namespace {

template <class Component, class Factory>
auto create(const Registered<Component>& registered, std::string_view what, Factory&& factory) {
    const std::string operation = fmt::format("{} '{}'", what, registered.component.name);
    auto object = call_plugin(*registered.plugin, operation, std::forward<Factory>(factory));
    if (!object) {
        throw PluginError(
            fmt::format("{}: {} returned nothing", describe_plugin(*registered.plugin), operation));
    }
    return keep_alive(std::move(object), registered.library);
}

}  // namespace

std::shared_ptr<sdk::Router> instantiate_router(const RegisteredRouter& router,
                                                const sdk::MoeLayerContext& context,
                                                const sdk::Params& params) {
    if (!router.component.make_router) {
        throw PluginError(fmt::format("{}: router '{}' is a block router (make_block), not a gate",
                                      describe_plugin(*router.plugin), router.component.name));
    }
    return create(router, "creating router",
                  [&] { return router.component.make_router(context, params); });
}

std::shared_ptr<sdk::MoeBlock> instantiate_block(const RegisteredRouter& router,
                                                 const sdk::MoeLayerContext& context,
                                                 const sdk::Params& params) {
    if (!router.component.make_block) {
        throw PluginError(fmt::format("{}: router '{}' is a gate (make_router), not a block",
                                      describe_plugin(*router.plugin), router.component.name));
    }
    return create(router, "creating MoE block",
                  [&] { return router.component.make_block(context, params); });
}

std::shared_ptr<sdk::Attention> instantiate_attention(const RegisteredAttention& attention,
                                                      const sdk::AttentionContext& context,
                                                      const sdk::Params& params) {
    return create(attention, "creating attention",
                  [&] { return attention.component.make_attention(context, params); });
}

std::shared_ptr<sdk::Tokenizer> train_tokenizer(const RegisteredTokenizer& tokenizer,
                                                const sdk::TokenizerTrainingData& data,
                                                const sdk::Params& params) {
    return create(tokenizer, "training tokenizer",
                  [&] { return tokenizer.component.train(data, params); });
}

std::shared_ptr<sdk::Tokenizer> load_tokenizer(const RegisteredTokenizer& tokenizer,
                                               std::string_view serialized,
                                               const sdk::Params& params) {
    return create(tokenizer, "loading tokenizer",
                  [&] { return tokenizer.component.load(serialized, params); });
}

std::shared_ptr<sdk::Tokenizer> load_tokenizer(const RegisteredTokenizer& tokenizer,
                                               std::string_view serialized,
                                               const sdk::Params& params,
                                               const std::filesystem::path& file) {
    try {
        return load_tokenizer(tokenizer, serialized, params);
    } catch (const PluginError& error) {
        // A host-side complaint (a null tokenizer) has no reason of the plugin's own: keep it
        // whole.
        if (error.reason().empty()) throw;
        throw FileError(file, fmt::format("{} (read as a '{}' tokenizer by {})", error.reason(),
                                          tokenizer.component.name, error.plugin()));
    }
}

}  // namespace moelab::core

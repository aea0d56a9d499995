#include "core/plugin/required_feature.h"

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/config/diagnostics.h"

namespace moelab::core {

void require_feature(const ResolvedRecipe& resolved, ComponentKind kind, std::string_view feature,
                     std::string_view why) {
    const std::vector<std::string>* features = nullptr;
    std::string name, section;
    switch (kind) {
        case ComponentKind::kAttention:
            features = &resolved.attention->component.features;
            name = resolved.attention->component.name;
            section = "attention";
            break;
        case ComponentKind::kTokenizer:
            features = &resolved.tokenizer->component.features;
            name = resolved.tokenizer->component.name;
            section = "tokenizer";
            break;
        case ComponentKind::kRouter:
            if (resolved.router == nullptr) {
                throw ConfigError(ConfigIssue{resolved.recipe.location_of("model.ffn"), "model.ffn",
                                              fmt::format("{} needs a router, and the model is "
                                                          "dense",
                                                          why)});
            }
            features = &resolved.router->component.features;
            name = resolved.router->component.name;
            section = "router";
            break;
    }
    if (std::find(features->begin(), features->end(), feature) != features->end()) return;
    const std::string key = section + ".plugin";
    throw ConfigError(ConfigIssue{
        resolved.recipe.location_of(key), key,
        fmt::format("{} '{}' does not list the feature {} ({}): {}", section, name, feature,
                    "features are opt-in; the component has only those it lists", why)});
}

}  // namespace moelab::core

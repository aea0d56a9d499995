#pragma once

// What a command needs of a component beyond what the recipe asks: features are opt-in
// (capability.h), so a command that decodes asks for the attention component's kv_cache.

#include <string_view>

#include "core/plugin/resolve.h"

namespace moelab::core {

// Throws ConfigError at <section>.plugin naming the component, the feature and `why` the command
// needs it, unless the resolved component of `kind` lists `feature` (e.g. the attention component
// and feature::kKvCache for decoding).
void require_feature(const ResolvedRecipe& resolved, ComponentKind kind, std::string_view feature,
                     std::string_view why);

}  // namespace moelab::core

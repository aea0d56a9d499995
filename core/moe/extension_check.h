#pragma once

// The host's side of Note [Extensions] (sdk/extensions.h): every extension key a plugin hands over
// must be one this host's SDK version defines, with the declared value type.

#include <initializer_list>
#include <string_view>
#include <type_traits>

#include "moelab/sdk/extensions.h"

namespace moelab::core {

// One key this host understands: its name and whether its value is a tensor (else a double).
struct KnownExtension {
    std::string_view name;
    bool tensor;
};

template <class Value>
constexpr KnownExtension known(const sdk::ExtensionKey<Value>& key) {
    return {key.name, std::is_same_v<Value, at::Tensor>};
}

// Throws sdk::Error naming `owner` (e.g. "RoutingDecision") and the key unless every entry of
// `extensions` is in `known_keys` with the right value type.
void check_extensions(const sdk::Extensions& extensions, std::string_view owner,
                      std::initializer_list<KnownExtension> known_keys);

}  // namespace moelab::core

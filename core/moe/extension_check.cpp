#include "core/moe/extension_check.h"

#include <string>

#include <fmt/format.h>

#include "core/system/printable.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/version.h"

namespace moelab::core {

void check_extensions(const sdk::Extensions& extensions, std::string_view owner,
                      std::initializer_list<KnownExtension> known_keys) {
    for (const auto& [name, value] : extensions.entries()) {
        const KnownExtension* match = nullptr;
        std::string names;
        for (const KnownExtension& key : known_keys) {
            if (key.name == name) match = &key;
            names += fmt::format("{}{}", names.empty() ? "" : ", ", key.name);
        }
        if (match == nullptr) {
            throw sdk::Error(fmt::format(
                "{} extension '{}' is not defined by this host's SDK {} (it defines: {}); a "
                "plugin built against a newer SDK minor version needs a newer moelab",
                owner, printable(name), sdk::kSdkVersion, names.empty() ? "none" : names));
        }
        const bool is_tensor = std::holds_alternative<at::Tensor>(value);
        if (is_tensor != match->tensor) {
            throw sdk::Error(fmt::format("{} extension '{}' must hold {}, got {}", owner, name,
                                         match->tensor ? "a tensor" : "a number",
                                         is_tensor ? "a tensor" : "a number"));
        }
    }
}

}  // namespace moelab::core

#pragma once

// Comparing build fingerprints ("compiler=gcc-12;cxx11abi=1;torch=1.13;cuda=0").

#include <optional>
#include <string>
#include <string_view>

namespace moelab::core {

// nullopt when the fingerprints agree; else which fields differ, e.g.
// "torch: plugin 2.5, host 1.13; cuda: plugin 1, host 0".
std::optional<std::string> fingerprint_mismatch(std::string_view plugin, std::string_view host);

}  // namespace moelab::core

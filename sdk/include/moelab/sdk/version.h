#pragma once

#include <cstdint>

namespace moelab::sdk {

// Version of the SDK headers, semantic: minor for additions that keep every existing interface
// byte-for-byte, major for anything else.
inline constexpr int kSdkVersionMajor = 5;
inline constexpr int kSdkVersionMinor = 6;
inline constexpr int kSdkVersionPatch = 1;
inline constexpr char kSdkVersion[] = "5.6.1";

// Version of the binary contract between host and plugin. Bump it whenever PluginDescriptor or
// any interface class crossing the boundary changes layout (members, virtual functions or their
// order). The loader refuses every plugin whose value differs from the host's; see
// Note [Plugin ABI rules] in sdk/README.md.
inline constexpr std::uint32_t kPluginAbiVersion = 5;

}  // namespace moelab::sdk

#pragma once

// The plugin entry point. Each plugin library exports exactly one C-linkage symbol,
// `moelab_plugin_entry`, returning a pointer to a static PluginDescriptor. Define it with
// MOELAB_PLUGIN in one source file of the plugin:
//
//   void register_components(moelab::sdk::Registrar& registrar) { registrar.add_router(...); }
//   MOELAB_PLUGIN("my-routers", "0.1.0", "One line about the plugin", register_components)

#include <cstdint>

#include "moelab/sdk/export.h"
#include "moelab/sdk/fingerprint.h"
#include "moelab/sdk/registrar.h"
#include "moelab/sdk/version.h"

namespace moelab::sdk {

struct PluginDescriptor {
    // Must stay the first member: the loader reads it before it trusts anything else.
    std::uint32_t abi_version;
    const char* sdk_version;        // kSdkVersion the plugin was compiled with
    const char* build_fingerprint;  // kBuildFingerprint the plugin was compiled with
    const char* name;               // plugin (library) name, e.g. "topk"
    const char* version;            // the plugin's own version
    const char* summary;
    void (*register_components)(Registrar& registrar);
};

inline constexpr char kPluginEntrySymbol[] = "moelab_plugin_entry";

}  // namespace moelab::sdk

#define MOELAB_PLUGIN(plugin_name, plugin_version, plugin_summary, register_fn)                    \
    extern "C" MOELAB_PLUGIN_EXPORT const ::moelab::sdk::PluginDescriptor* moelab_plugin_entry() { \
        static const ::moelab::sdk::PluginDescriptor descriptor{::moelab::sdk::kPluginAbiVersion,  \
                                                                ::moelab::sdk::kSdkVersion,        \
                                                                ::moelab::sdk::kBuildFingerprint,  \
                                                                plugin_name,                       \
                                                                plugin_version,                    \
                                                                plugin_summary,                    \
                                                                register_fn};                      \
        return &descriptor;                                                                        \
    }

#include "core/plugin/loader.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <system_error>

#include <boost/dll/shared_library.hpp>
#include <fmt/format.h>

#include "core/plugin/fingerprint_check.h"
#include "core/plugin/plugin_error.h"
#include "moelab/sdk/plugin.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPluginPrefix = "moelab-plugin-";
constexpr std::string_view kPluginSuffix = ".so";

fs::path executable_directory() {
    std::error_code error;
    const fs::path self = fs::read_symlink("/proc/self/exe", error);
    return error ? fs::current_path() : self.parent_path();
}

std::string descriptor_string(const char* text) { return text == nullptr ? "" : text; }

}  // namespace

fs::path builtin_plugin_directory() {
    return (executable_directory() / ".." / "lib" / "moelab" / "plugins").lexically_normal();
}

std::vector<fs::path> environment_plugin_directories() {
    std::vector<fs::path> directories;
    const char* value = std::getenv("MOELAB_PLUGIN_PATH");
    if (value == nullptr) return directories;
    std::string_view rest(value);
    while (!rest.empty()) {
        const auto colon = rest.find(':');
        const std::string_view entry = rest.substr(0, colon);
        if (!entry.empty()) directories.emplace_back(std::string(entry));
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
    }
    return directories;
}

std::vector<fs::path> plugin_search_path(const std::vector<std::string>& extra) {
    std::vector<fs::path> directories{builtin_plugin_directory()};
    for (fs::path& dir : environment_plugin_directories()) directories.push_back(std::move(dir));
    for (const std::string& dir : extra) directories.emplace_back(dir);
    return directories;
}

bool is_plugin_file_name(const fs::path& file) {
    const std::string name = file.filename().string();
    return name.size() > kPluginPrefix.size() + kPluginSuffix.size() &&
           name.compare(0, kPluginPrefix.size(), kPluginPrefix) == 0 &&
           name.compare(name.size() - kPluginSuffix.size(), kPluginSuffix.size(),
                        kPluginSuffix) == 0;
}

void load_plugin_file(const fs::path& file, PluginRegistry& registry) {
    auto refuse = [&](std::string reason) {
        registry.add_refusal(PluginRefusal{file, std::move(reason)});
    };

    std::shared_ptr<boost::dll::shared_library> library;
    try {
        library = std::make_shared<boost::dll::shared_library>(
            file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& error) {
        refuse(fmt::format("cannot be loaded: {}", error.what()));
        return;
    }
    if (!library->has(sdk::kPluginEntrySymbol)) {
        refuse(fmt::format("is not a moelab plugin: it does not export '{}' (build plugins with "
                           "moelab_add_plugin() and define the entry with MOELAB_PLUGIN)",
                           sdk::kPluginEntrySymbol));
        return;
    }

    // Until the ABI version matches, nothing but the descriptor's first field is trusted.
    PluginInfo bootstrap{file, file.stem().string(), "", "", "", ""};
    const sdk::PluginDescriptor* descriptor = nullptr;
    try {
        auto& entry = library->get<const sdk::PluginDescriptor*()>(sdk::kPluginEntrySymbol);
        descriptor = call_plugin(bootstrap, "reading the plugin descriptor", entry);
    } catch (const PluginError& error) {
        refuse(error.what());
        return;
    }
    if (descriptor == nullptr) {
        refuse(fmt::format("{} returned no descriptor", sdk::kPluginEntrySymbol));
        return;
    }
    if (descriptor->abi_version != sdk::kPluginAbiVersion) {
        refuse(fmt::format("plugin ABI version {} does not match the host's ABI version {}; "
                           "rebuild the plugin against moelab SDK {}",
                           descriptor->abi_version, sdk::kPluginAbiVersion, sdk::kSdkVersion));
        return;
    }
    auto plugin = std::make_shared<PluginInfo>();
    plugin->file = file;
    plugin->name = descriptor_string(descriptor->name);
    plugin->version = descriptor_string(descriptor->version);
    plugin->summary = descriptor_string(descriptor->summary);
    plugin->sdk_version = descriptor_string(descriptor->sdk_version);
    plugin->build_fingerprint = descriptor_string(descriptor->build_fingerprint);
    if (auto mismatch = fingerprint_mismatch(plugin->build_fingerprint, sdk::kBuildFingerprint)) {
        refuse(fmt::format("plugin '{}' was built for '{}' but this moelab is '{}' ({}); rebuild "
                           "the plugin with the same compiler, LibTorch and CUDA setting",
                           plugin->name, plugin->build_fingerprint, sdk::kBuildFingerprint,
                           *mismatch));
        return;
    }
    if (descriptor->register_components == nullptr) {
        refuse(fmt::format("plugin '{}' has no register_components function", plugin->name));
        return;
    }
    const auto register_fn = descriptor->register_components;
    if (auto problem = registry.add_plugin(plugin, library, [register_fn](sdk::Registrar& r) {
            register_fn(r);
        })) {
        refuse(*problem);
    }
}

PluginRegistry load_plugins(const std::vector<fs::path>& directories) {
    PluginRegistry registry;
    std::set<fs::path> seen;
    for (const fs::path& directory : directories) {
        std::error_code error;
        if (!fs::is_directory(directory, error)) continue;
        std::vector<fs::path> candidates;
        for (const auto& entry : fs::directory_iterator(directory, error)) {
            if (entry.is_regular_file(error) && is_plugin_file_name(entry.path())) {
                candidates.push_back(entry.path());
            }
        }
        std::sort(candidates.begin(), candidates.end());
        for (const fs::path& candidate : candidates) {
            const fs::path canonical = fs::weakly_canonical(candidate, error);
            if (!seen.insert(error ? candidate : canonical).second) continue;
            load_plugin_file(candidate, registry);
        }
    }
    return registry;
}

}  // namespace moelab::core

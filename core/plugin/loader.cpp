#include "core/plugin/loader.h"

#include <dlfcn.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <boost/dll/shared_library.hpp>

#include "core/plugin/fingerprint_check.h"
#include "core/plugin/plugin_error.h"
#include "core/system/file_error.h"
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

// The minor number of "major.minor.patch"; 0 when the text has none (the major check has already
// refused what is not this host's major version).
int sdk_minor_version(const std::string& version) {
    const std::size_t dot = version.find('.');
    if (dot == std::string::npos) return 0;
    int minor = 0;
    for (std::size_t i = dot + 1; i < version.size() && version[i] >= '0' && version[i] <= '9';
         ++i) {
        if (minor > 100000) break;
        minor = minor * 10 + (version[i] - '0');
    }
    return minor;
}

// Why `file` cannot be a loadable shared object, judged from its ELF header, or nullopt. Handing
// the dynamic linker a text file or a truncated library gives only an opaque error.
std::optional<std::string> not_a_shared_object(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return fmt::format("cannot be opened: {}", errno_text(errno));
    unsigned char header[18] = {};
    in.read(reinterpret_cast<char*>(header), sizeof header);
    if (in.gcount() < static_cast<std::streamsize>(sizeof header) || header[0] != 0x7f ||
        header[1] != 'E' || header[2] != 'L' || header[3] != 'F') {
        return std::string("cannot be loaded: it is not a shared library (no ELF header)");
    }
    const int type = header[16] | (header[17] << 8);  // e_type, little-endian hosts
    if (type != 3 /* ET_DYN */) {
        return std::string("cannot be loaded: it is an ELF file but not a shared library");
    }
    return std::nullopt;
}

std::string dynamic_linker_error(const fs::path& file) {
    void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
        ::dlclose(handle);
        return "unknown reason (it loads when tried again)";
    }
    const char* text = ::dlerror();
    return text == nullptr ? std::string("unknown reason") : std::string(text);
}

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
           name.compare(name.size() - kPluginSuffix.size(), kPluginSuffix.size(), kPluginSuffix) ==
               0;
}

void load_plugin_file(const fs::path& file, PluginRegistry& registry) {
    auto refuse = [&](std::string reason) {
        registry.add_refusal(PluginRefusal{file, std::move(reason)});
    };

    if (auto problem = not_a_shared_object(file)) {
        refuse(*problem);
        return;
    }
    std::shared_ptr<boost::dll::shared_library> library;
    try {
        library = std::make_shared<boost::dll::shared_library>(
            file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception&) {
        // Boost's text wraps the dynamic linker's; the linker's own words say what is missing.
        refuse(
            fmt::format("cannot be loaded by the dynamic linker: {}", dynamic_linker_error(file)));
        return;
    }
    if (!library->has(sdk::kPluginEntrySymbol)) {
        refuse(
            fmt::format("is not a moelab plugin: it does not export '{}' (build plugins with "
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
        refuse(
            fmt::format("plugin ABI version {} does not match the host's ABI version {}; "
                        "rebuild the plugin against moelab SDK {}",
                        descriptor->abi_version, sdk::kPluginAbiVersion, sdk::kSdkVersion));
        return;
    }
    // The ABI number covers layouts; the SDK's major version covers meaning (what a field asks of
    // the plugin). A descriptor that claims another major version is refused even when its ABI
    // number matches.
    const std::string plugin_sdk = descriptor_string(descriptor->sdk_version);
    const std::string host_major = std::to_string(sdk::kSdkVersionMajor);
    if (plugin_sdk.substr(0, plugin_sdk.find('.')) != host_major) {
        refuse(
            fmt::format("plugin built against moelab SDK '{}', but this moelab has SDK {} "
                        "(major versions must match); rebuild the plugin against SDK {}",
                        plugin_sdk, sdk::kSdkVersion, sdk::kSdkVersion));
        return;
    }
    // A newer minor version may read what this host does not fill in (fields appended to the
    // input structs, Note [Plugin ABI rules]): refused like another major version.
    if (sdk_minor_version(plugin_sdk) > sdk::kSdkVersionMinor) {
        refuse(
            fmt::format("plugin built against moelab SDK '{}', newer than this moelab's SDK {}; "
                        "upgrade moelab or rebuild the plugin against SDK {}",
                        plugin_sdk, sdk::kSdkVersion, sdk::kSdkVersion));
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
        refuse(fmt::format(
            "plugin '{}' was built for '{}' but this moelab is '{}' ({}); rebuild "
            "the plugin with the same compiler, LibTorch and CUDA setting",
            plugin->name, plugin->build_fingerprint, sdk::kBuildFingerprint, *mismatch));
        return;
    }
    if (descriptor->register_components == nullptr) {
        refuse(fmt::format("plugin '{}' has no register_components function", plugin->name));
        return;
    }
    const auto register_fn = descriptor->register_components;
    if (auto problem = registry.add_plugin(plugin, library,
                                           [register_fn](sdk::Registrar& r) { register_fn(r); })) {
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

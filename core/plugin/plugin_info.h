#pragma once

// What the host knows about one loaded plugin library.

#include <filesystem>
#include <memory>
#include <string>

namespace moelab::core {

// Keeps a plugin library loaded. Every object a plugin creates holds one (keep_alive.h), so a
// library can never be unloaded while its code may still run.
using LibraryHandle = std::shared_ptr<const void>;

struct PluginInfo {
    std::filesystem::path file;
    std::string name;
    std::string version;
    std::string summary;
    std::string sdk_version;
    std::string build_fingerprint;
};

}  // namespace moelab::core

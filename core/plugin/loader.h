#pragma once

// Plugin discovery and loading. Discovery scans directories (no plugin names are known to the
// host): every regular file named moelab-plugin-*.so is a candidate; anything else is ignored.
// A candidate is loaded with Boost.DLL, its descriptor checked (ABI version first, then the build
// fingerprint), and its components registered. Libraries that fail any step are refused: the
// registry records the file and the reason, and nothing of theirs is registered.
//
// Libraries stay loaded for as long as the registry or any object one of them created lives.

#include <filesystem>
#include <string>
#include <vector>

#include "core/plugin/registry.h"

namespace moelab::core {

// <directory of the moelab executable>/../lib/moelab/plugins
std::filesystem::path builtin_plugin_directory();

// The colon-separated entries of MOELAB_PLUGIN_PATH, in order.
std::vector<std::filesystem::path> environment_plugin_directories();

// Built-in directory first, then MOELAB_PLUGIN_PATH, then `extra` (a recipe's search_path).
std::vector<std::filesystem::path> plugin_search_path(
    const std::vector<std::string>& extra = {});

bool is_plugin_file_name(const std::filesystem::path& file);

// Loads every candidate in `directories` (missing directories are skipped; the same file reached
// twice is loaded once).
PluginRegistry load_plugins(const std::vector<std::filesystem::path>& directories);

// Loads one library into `registry`; a refusal is recorded there, never thrown.
void load_plugin_file(const std::filesystem::path& file, PluginRegistry& registry);

}  // namespace moelab::core

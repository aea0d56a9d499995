#pragma once

// The one way from a recipe file to resolved plugins, shared by every command (run, check, eval,
// generate, compare, data): load the recipe with its overrides, load the plugins of the search
// path, resolve the device once, resolve every component against the capability query.

#include <memory>
#include <string>
#include <vector>

#include "core/plugin/registry.h"
#include "core/plugin/resolve.h"

namespace moelab::core {

// Loads the plugins of the search path (built-ins, MOELAB_PLUGIN_PATH, `extra`). Refused
// libraries are an error (RunSetupError listing every file and reason) unless `allow_refusals`,
// in which case they are printed to stderr as a warning.
PluginRegistry load_plugin_registry(const std::vector<std::string>& extra, bool allow_refusals);

std::string format_refusals(const PluginRegistry& registry);

// A recipe loaded, its plugins found and resolved against the run's device. The registry owns
// what `resolved` points into; keep them together.
struct LoadedRecipe {
    PluginRegistry registry;
    ResolvedRecipe resolved;
    DeviceChoice device = DeviceChoice::kCpu;  // resolved: kCpu or kCuda
};

// ConfigError for a bad recipe, RunSetupError for refused plugins it needs. `features`: optional
// features the command needs (feature::kKvCache for decoding); a component without them is
// refused with its reason.
std::unique_ptr<LoadedRecipe> load_and_resolve(const std::string& recipe_file,
                                               const std::vector<std::string>& overrides,
                                               const std::vector<std::string>& features = {});

}  // namespace moelab::core

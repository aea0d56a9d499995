#pragma once

// Exit codes and error reporting shared by all subcommands:
//   0 success, 1 runtime error (including errors raised by plugins), 2 usage or configuration
//   error (bad command line, bad recipe, refused plugins).

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/plugin/registry.h"
#include "core/plugin/resolve.h"

#include <memory>

namespace moelab::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsageError = 2;

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Runs `command`, printing any error to stderr and mapping it to its exit code.
int run_guarded(const std::function<int()>& command);

// Loads the plugins of the search path (built-ins, MOELAB_PLUGIN_PATH, `extra`). Refused
// libraries are an error (UsageError listing every file and reason) unless `allow_refusals`, in
// which case they are only printed to stderr.
core::PluginRegistry load_registry(const std::vector<std::string>& extra, bool allow_refusals);

std::string format_refusals(const core::PluginRegistry& registry);

// A recipe loaded, its plugins found and resolved against the run's device. The registry owns
// what `resolved` points into; keep them together.
struct LoadedRecipe {
    core::PluginRegistry registry;
    core::ResolvedRecipe resolved;
    core::DeviceChoice device = core::DeviceChoice::kCpu;  // resolved: kCpu or kCuda
};
std::unique_ptr<LoadedRecipe> load_and_resolve(const std::string& recipe_file,
                                               const std::vector<std::string>& overrides,
                                               const std::vector<std::string>& features = {});

}  // namespace moelab::cli

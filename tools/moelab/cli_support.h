#pragma once

// Exit codes and error reporting shared by all subcommands:
//   0 success, 1 runtime error (including errors raised by plugins), 2 usage or configuration
//   error (bad command line, bad recipe, refused plugins).

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/plugin/registry.h"

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

}  // namespace moelab::cli

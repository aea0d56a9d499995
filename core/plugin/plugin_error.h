#pragma once

// Every call into plugin code goes through call_plugin(), which turns whatever the plugin throws
// into a PluginError naming the plugin, its file and the operation. Nothing a plugin throws
// escapes as a bare exception, and the CLI reports PluginErrors as runtime errors (exit code 1).

#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "core/plugin/plugin_info.h"

namespace moelab::core {

class PluginError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
    // "<plugin>: <operation> failed: <reason>", keeping the plugin's own words apart, so that a
    // caller with more context can say it once instead of wrapping the whole text again.
    PluginError(const std::string& plugin, std::string_view operation, std::string reason);

    // The plugin's own message; empty for errors the host raised about a plugin.
    const std::string& reason() const { return reason_; }
    const std::string& plugin() const { return plugin_; }

  private:
    std::string plugin_;
    std::string reason_;
};

std::string describe_plugin(const PluginInfo& plugin);  // "plugin 'topk' (path/to/lib.so)"

[[noreturn]] void rethrow_as_plugin_error(const PluginInfo& plugin, std::string_view operation,
                                          std::exception_ptr error);

template <class Call>
decltype(auto) call_plugin(const PluginInfo& plugin, std::string_view operation, Call&& call) {
    try {
        return std::forward<Call>(call)();
    } catch (...) {
        rethrow_as_plugin_error(plugin, operation, std::current_exception());
    }
}

}  // namespace moelab::core

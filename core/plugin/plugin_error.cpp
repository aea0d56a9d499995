#include "core/plugin/plugin_error.h"

#include <fmt/format.h>

namespace moelab::core {

PluginError::PluginError(const std::string& plugin, std::string_view operation, std::string reason)
    : std::runtime_error(fmt::format("{}: {} failed: {}", plugin, operation, reason)),
      plugin_(plugin),
      reason_(std::move(reason)) {}

std::string describe_plugin(const PluginInfo& plugin) {
    return fmt::format("plugin '{}' ({})", plugin.name, plugin.file.string());
}

void rethrow_as_plugin_error(const PluginInfo& plugin, std::string_view operation,
                             std::exception_ptr error) {
    try {
        std::rethrow_exception(error);
    } catch (const PluginError&) {
        throw;  // already names its plugin
    } catch (const std::exception& e) {
        throw PluginError(describe_plugin(plugin), operation, e.what());
    } catch (...) {
        throw PluginError(fmt::format("{}: {} failed with a non-standard exception",
                                      describe_plugin(plugin), operation));
    }
}

}  // namespace moelab::core

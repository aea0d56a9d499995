#include <filesystem>
#include <variant>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/config/suggest.h"
#include "core/conformance/kit.h"
#include "core/plugin/loader.h"
#include "core/system/file_error.h"
#include "core/system/printable.h"

namespace moelab::cli {

namespace fs = std::filesystem;

int test_plugin(const std::string& target) {
    // A library file is tested alone, whatever else is on the search path; a name is looked up
    // on the search path like a recipe's plugin = "...".
    const bool is_file =
        target.find('/') != std::string::npos || fs::path(target).extension() == ".so";
    core::PluginRegistry registry = is_file
                                        ? core::load_plugins({fs::path(target).parent_path().empty()
                                                                  ? fs::path(".")
                                                                  : fs::path(target).parent_path()})
                                        : core::load_plugin_registry({}, /*allow_refusals=*/true);
    std::vector<const core::RegisteredComponent*> components;
    if (is_file) {
        if (!fs::is_regular_file(target)) {
            throw UsageError(
                fmt::format("{}: no such plugin library", core::printable_path(target)));
        }
        for (const core::PluginRefusal& refusal : registry.refusals()) {
            if (fs::equivalent(refusal.file, target)) {
                throw UsageError(
                    fmt::format("{} cannot be loaded: {}", refusal.file.string(), refusal.reason));
            }
        }
        for (const auto& [name, component] : registry.components()) {
            const auto& plugin = std::visit([](const auto& r) { return r.plugin; }, component);
            if (fs::equivalent(plugin->file, target)) components.push_back(&component);
        }
        if (components.empty()) {
            throw UsageError(fmt::format("{} registers no component", target));
        }
    } else if (auto it = registry.components().find(target); it != registry.components().end()) {
        components.push_back(&it->second);
    } else {
        std::vector<std::string> names;
        for (const auto& [name, component] : registry.components()) names.push_back(name);
        throw UsageError(fmt::format("no component named '{}'{}", core::printable(target),
                                     core::did_you_mean(target, names)));
    }
    std::vector<core::ConformanceReport> reports;
    for (const core::RegisteredComponent* component : components) {
        reports.push_back(core::test_component(*component));
    }
    bool passed = true;
    for (const core::ConformanceReport& report : reports) {
        fmt::print("{}", report.table());
        fmt::print("{}\n", report.passed() ? "passed" : "FAILED");
        passed = passed && report.passed();
    }
    return passed ? kExitOk : kExitRuntimeError;
}

}  // namespace moelab::cli

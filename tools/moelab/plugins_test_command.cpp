#include <filesystem>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/config/suggest.h"
#include "core/conformance/router_conformance.h"
#include "core/plugin/loader.h"
#include "core/system/file_error.h"

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
                                        : load_registry({}, /*allow_refusals=*/true);
    std::vector<const core::RegisteredRouter*> routers;
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
        for (const std::string& name : registry.names(core::ComponentKind::kRouter)) {
            const core::RegisteredRouter* router = registry.find_router(name);
            if (fs::equivalent(router->plugin->file, target)) routers.push_back(router);
        }
    } else if (const core::RegisteredRouter* router = registry.find_router(target)) {
        routers.push_back(router);
    } else if (auto listing = registry.listing(target)) {
        throw UsageError(fmt::format(
            "'{}' is {} component; the conformance kit covers routers "
            "(attention and tokenizer checks are not written yet)",
            target,
            listing->kind == core::ComponentKind::kAttention ? "an attention" : "a tokenizer"));
    } else {
        throw UsageError(
            fmt::format("no component named '{}'{}", target,
                        core::did_you_mean(target, registry.names(core::ComponentKind::kRouter))));
    }
    if (routers.empty()) {
        throw UsageError(fmt::format("{} registers no router component", target));
    }
    bool passed = true;
    for (const core::RegisteredRouter* router : routers) {
        const core::ConformanceReport report = core::test_router_component(*router);
        fmt::print("{}", report.table());
        fmt::print("{}\n", report.passed() ? "passed" : "FAILED");
        passed = passed && report.passed();
    }
    return passed ? kExitOk : kExitRuntimeError;
}

}  // namespace moelab::cli

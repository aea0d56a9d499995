#include <filesystem>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/config/suggest.h"
#include "core/conformance/attention_conformance.h"
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
    std::vector<const core::RegisteredAttention*> attentions;
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
        for (const std::string& name : registry.names(core::ComponentKind::kAttention)) {
            const core::RegisteredAttention* attention = registry.find_attention(name);
            if (fs::equivalent(attention->plugin->file, target)) attentions.push_back(attention);
        }
    } else if (const core::RegisteredRouter* router = registry.find_router(target)) {
        routers.push_back(router);
    } else if (const core::RegisteredAttention* attention = registry.find_attention(target)) {
        attentions.push_back(attention);
    } else if (registry.listing(target)) {
        throw UsageError(
            fmt::format("'{}' is a tokenizer component; the conformance kit covers "
                        "routers and attention (tokenizer checks are not written "
                        "yet)",
                        target));
    } else {
        throw UsageError(
            fmt::format("no component named '{}'{}", target,
                        core::did_you_mean(target, registry.names(core::ComponentKind::kRouter))));
    }
    if (routers.empty() && attentions.empty()) {
        throw UsageError(fmt::format("{} registers no router or attention component", target));
    }
    std::vector<core::ConformanceReport> reports;
    for (const core::RegisteredRouter* router : routers) {
        reports.push_back(core::test_router_component(*router));
    }
    for (const core::RegisteredAttention* attention : attentions) {
        reports.push_back(core::test_attention_component(*attention));
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
